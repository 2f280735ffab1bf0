"""The options of the stages built on the core (ensemble, distillation, export), one dataclass each.

Why here: the ``ensemble`` and ``export`` packages run these stages, but the pipeline config
(:mod:`zoo.config`) and the CLI (:mod:`zoo.commands`) need their fields and defaults too, and
the core never imports the packages built on it. So each stage's options are written once,
here; ``ensemble.build``/``ensemble.distill`` import them (and add the checks that need their
own modules), ``zoo.config``'s ``[ensemble]``/``[distill]`` sections turn into them, and argparse
reads its defaults from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from zoo.errors import ZooError

# ONNX opset of every export; tf2onnx 1.17 converts reliably in MIN..MAX.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18

# A compact custom_cnn (about a quarter of the default's parameters): the default student.
COMPACT_CUSTOM_CNN = {"widths": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "stem_width": 16}


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (for argparse ``default=``), factories called."""
    for f in fields(cls):
        if f.name == name:
            return f.default_factory() if callable(f.default_factory) else f.default
    raise KeyError(f"{cls.__name__} has no field {name!r}")


@dataclass
class EnsembleConfig:
    """How to combine members (``ensemble.build``). ``weights`` None = fit them (vote); ``tta`` None = no TTA.

    ``ensemble.build.check_config`` adds the checks that need the ensemble package (learners, TTA views).
    """

    method: str = "vote"
    weights: list[float] | None = None
    calibrate: bool = False
    tta: str | list[str] | None = None
    learner: str = "logistic"
    learner_params: dict[str, Any] = field(default_factory=dict)
    features: str = "log"
    folds: int = 5
    seed: int = 0
    fit_split: str = "val"
    batch_size: int = 64
    min_weight: float = 1e-3  # vote members weighted below this are left out (reported in the card)
    # Robust fit (ensemble.robust): shifted copies of the fit split from these zoo.shift families join the fit rows.
    fit_shift: list[str] = field(default_factory=list)
    fit_shift_severities: list[int] = field(default_factory=lambda: [2, 4])
    # With fit_shift: a vote's weights by shifted accuracy among those keeping this clean accuracy
    # (ensemble.voting.fit_weights_floor) instead of minimising log-loss over all rows; a stack's weight of
    # the shifted rows by the same rule on inner out-of-fold scores (ensemble.stacking.select_candidate).
    fit_clean_floor: float | None = None
    # Stack: choose the meta-learner's regularisation (logistic C, ridge alpha) by inner cross-validation
    # unless learner_params fixes it (ensemble.stacking.REGULARISATION_GRID). Off by default: on pbc-cpu's
    # members the nested choice moved the stack by one image (98.83% vs 98.89%, pbc_cpu_stack_floor.md).
    select_regularisation: bool = False


@dataclass
class DistillConfig:
    """Options of ``ensemble.distill.distill``: the student, its training loop and the distillation loss."""

    student: str = "custom_cnn"
    params: dict[str, Any] | None = None  # None: COMPACT_CUSTOM_CNN for custom_cnn, else the builder's defaults
    image_size: int | None = None  # None: the ensemble's input size
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    alpha: float = 0.7
    temperature: float = 2.0
    augment: str = "flip_rot90"
    patience: int = 4
    seed: int = 0
    teacher_batch_size: int = 64
    tensorboard: bool = False
    evaluate_splits: list[str] = field(default_factory=lambda: ["val", "test"])

    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ZooError(f"alpha must be in 0..1, got {self.alpha}")
        if self.temperature <= 0:
            raise ZooError(f"temperature must be > 0, got {self.temperature}")
        for name in ("epochs", "batch_size", "patience", "teacher_batch_size"):
            if getattr(self, name) < 1 and not (name == "patience" and getattr(self, name) == 0):
                raise ZooError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ZooError(f"learning_rate must be > 0, got {self.learning_rate}")

    def student_params(self) -> dict[str, Any]:
        if self.params is not None:
            return dict(self.params)
        return dict(COMPACT_CUSTOM_CNN) if self.student == "custom_cnn" else {}
