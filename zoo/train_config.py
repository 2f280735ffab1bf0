"""What one training run is asked to do: its options (:class:`TrainConfig`) and the phases they make.

Pure data, no TensorFlow: the pipeline's TOML reader, the ``zoo train`` flags and the run layout (which
names a member's snapshot folders) read it without importing the training loop (:mod:`zoo.train`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from zoo.artifacts import SNAPSHOTS_DIR
from zoo.errors import ZooError

OPTIMIZERS = ("adam", "nadam", "adamw", "lion")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass
class Phase:
    """A stretch of training with its own trainable set and learning-rate scale."""

    name: str = "train"
    epochs: int | None = None  # None: whatever remains of TrainConfig.epochs
    lr_scale: float = 1.0
    trainable_fraction: float | None = None  # None: whole model; else fraction of the "backbone"


@dataclass
class TrainConfig:
    """The options of one training run: ``zoo train``'s flags, a pipeline's ``[train]`` and each member's ``train``."""

    epochs: int = 30
    batch_size: int = 256
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    schedule: str = "cosine"  # cosine (with warm-up) | constant
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    patience: int = 4
    monitor: str = "val_accuracy"
    class_weights: bool = True
    augment: str = "flip_rot90"
    balance: int | None = None
    seed: int = 0
    strategy: str = "auto"
    precision: str = "float32"
    gradient_accumulation: int = 1
    trainable_fraction: float | None = None  # overrides the fine-tuning phase's fraction
    tensorboard: bool = True
    # TensorFlow op determinism + every seed + sequential random augmentation: the same run twice gives
    # bitwise-identical weights (benchmarks/results/determinism.md measures the cost).
    deterministic: bool = True
    phases: list[Phase] = field(default_factory=list)
    # Snapshot ensemble (Huang et al. 2017): the cosine schedule restarts so the epochs run as this many
    # cycles; every cycle but the last also leaves its best weights as a member of its own
    # (``snapshots/cycle<k>/``), extra ensemble members for no extra training.
    snapshots: int = 1

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ZooError(f"optimizer '{self.optimizer}' is not one of {OPTIMIZERS}")
        if self.strategy not in STRATEGIES:
            raise ZooError(f"strategy '{self.strategy}' is not one of {STRATEGIES}")
        if self.precision not in PRECISIONS:
            raise ZooError(f"precision '{self.precision}' is not one of {PRECISIONS}")
        if self.schedule not in ("cosine", "constant"):
            raise ZooError(f"schedule '{self.schedule}' is not 'cosine' or 'constant'")
        for name in ("epochs", "batch_size", "gradient_accumulation"):
            if getattr(self, name) < 1:
                raise ZooError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ZooError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.trainable_fraction is not None and not 0 <= self.trainable_fraction <= 1:
            raise ZooError(f"trainable_fraction must be in 0..1, got {self.trainable_fraction}")
        if not 0 <= self.label_smoothing < 1:
            raise ZooError(f"label_smoothing must be in 0..1 (exclusive), got {self.label_smoothing}")
        for name in ("weight_decay", "warmup_epochs", "patience"):
            if getattr(self, name) < 0:
                raise ZooError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.balance is not None and self.balance < 1:
            raise ZooError(f"balance must be ≥ 1 images per class, got {self.balance}")
        if not 1 <= self.snapshots <= self.epochs:
            raise ZooError(f"snapshots must be in 1..epochs ({self.epochs}), got {self.snapshots}")
        if self.snapshots > 1 and self.schedule != "cosine":
            raise ZooError("snapshots restart the cosine schedule; they need schedule 'cosine'")
        if self.snapshots > 1 and self.phases:
            raise ZooError("snapshots and phases cannot be combined: snapshots make the phases (one per cycle)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["phases"] = [Phase(**p) if isinstance(p, dict) else p for p in d.get("phases", [])]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resolve_phases(cfg: TrainConfig, recipe: dict[str, Any], pretrained: bool) -> list[Phase]:
    """Phases from the config, else the member's recipe (when pretrained), else snapshot cycles, else one phase."""
    if cfg.snapshots > 1:
        if pretrained and recipe.get("phases"):
            raise ZooError("snapshots need a model trained in one phase; this pretrained member fine-tunes in phases")
        return snapshot_cycles(cfg.epochs, cfg.snapshots)
    if cfg.phases:
        phases = list(cfg.phases)
    elif pretrained and recipe.get("phases"):
        phases = [Phase(**p) for p in recipe["phases"]]
    else:
        phases = [Phase()]
    if cfg.trainable_fraction is not None:
        phases = [
            Phase(
                p.name,
                p.epochs,
                p.lr_scale,
                cfg.trainable_fraction if (p.trainable_fraction or 0) > 0 else p.trainable_fraction,
            )
            for p in phases
        ]
    fixed = sum(p.epochs or 0 for p in phases)
    open_ = [p for p in phases if p.epochs is None]
    remaining = max(1, cfg.epochs - fixed)
    return [
        Phase(
            p.name,
            p.epochs if p.epochs is not None else max(1, remaining // len(open_)),
            p.lr_scale,
            p.trainable_fraction,
        )
        for p in phases
    ]


def snapshot_cycles(epochs: int, cycles: int) -> list[Phase]:
    """``epochs`` as ``cycles`` phases ``cycle1..`` (the first ones one epoch longer when it does not divide).

    Each phase compiles a fresh optimizer whose warm-up + cosine schedule spans that phase alone, and
    starts from the previous phase's best weights: a warm restart, and one snapshot per cycle.
    """
    base, extra = divmod(epochs, cycles)
    return [Phase(f"cycle{k + 1}", base + (k < extra)) for k in range(cycles)]


def snapshot_dirs(run: str | os.PathLike, snapshots: int) -> list[Path]:
    """The member folders a run trained with ``snapshots`` cycles leaves inside it (its last cycle is the run itself)."""
    return [Path(run) / SNAPSHOTS_DIR / p.name for p in snapshot_cycles(snapshots, snapshots)[:-1]]
