"""Pipeline configuration: one TOML file, validated into dataclasses.

Unknown keys and wrong types are errors that name the key path (``members[1].params``), so
a typo never silently falls back to a default. Every section has working defaults: an empty
file is the built-in quickstart.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.stage_config import DEFAULT_OPSET, DistillConfig, EnsembleConfig
from zoo.train_config import Phase, TrainConfig

BUILTIN = Path(__file__).resolve().parent / "configs"


@dataclass
class DataConfig:
    source: str = "synthetic:1600"
    image_size: int = 48
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    skip_bad_files: bool = False

    def validate(self) -> None:
        if not 8 <= self.image_size <= 1024:
            raise ZooError(f"config: data.image_size must be in 8..1024, got {self.image_size}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ZooError(f"config: data.{name} must be in 0..1 (exclusive), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ZooError(
                f"config: data.val_fraction + data.test_fraction must leave images for training, got {self.val_fraction} + {self.test_fraction}"
            )


@dataclass
class MemberConfig:
    member: str = "custom_cnn"
    name: str | None = None  # run folder name; default: the member name
    params: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields for this member only
    image_size: int | None = None  # this member's input size (default data.image_size); ensembles mix sizes

    @property
    def run_name(self) -> str:
        return self.name or self.member


@dataclass
class EvaluateConfig:
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    shifted: float | None = 0.5  # severity of the stain/blur/noise-shifted copy; None to skip
    # The shift suite (zoo.shift) on every member, ensemble and student: per family and severity,
    # in-family vs out-of-family. Families: [] or ["all"] for all six.
    shift_suite: bool = True
    shift_families: list[str] = field(default_factory=list)
    shift_max_images: int = 600  # stratified subsample of the split (0 = all)
    shift_split: str = "test"  # falls back to "val" when the data has no test split
    shift_reference: str | None = None  # member run name that normalises CE (default: the first member)
    shift_seed: int = 0
    # Also score the suite with each acquisition's magnification read and undone first (zoo.magnification,
    # label-free, per set): eval/shift_suite_adapt_scale.* beside the plain results, and a column of its own
    # in the summary. Doubles the suite's time.
    shift_adapt_scale: bool = False

    def validate(self, member_names: list[str]) -> None:
        from zoo.shift import resolve_families

        try:
            resolve_families(self.shift_families)
        except ZooError as exc:
            raise ZooError(f"config: evaluate.shift_families: {exc}") from None
        if self.shift_max_images < 0:
            raise ZooError(f"config: evaluate.shift_max_images must be >= 0, got {self.shift_max_images}")
        if self.shift_split not in ("train", "val", "test"):
            raise ZooError(f"config: evaluate.shift_split must be train, val or test, got {self.shift_split!r}")
        if self.shift_reference is not None and self.shift_reference not in member_names:
            raise ZooError(
                f"config: evaluate.shift_reference '{self.shift_reference}' is not a member run name {member_names}"
            )


@dataclass
class EnsembleSection:
    """``[ensemble]``: which ensembles the pipeline builds; each method becomes one stage
    :class:`~zoo.stage_config.EnsembleConfig` (:meth:`to_stage`), the one owner of the ensemble options."""

    enabled: bool = True
    methods: list[str] = field(default_factory=lambda: ["vote", "stack"])
    calibrate: bool = True  # the pipeline calibrates by default (the stage's own default is off)
    tta: bool = False  # True: dihedral TTA
    # Robust fit of the vote (ensemble.robust): shifted val copies of these zoo.shift families join the weight fit.
    vote_fit_shift: list[str] = field(default_factory=list)
    # With vote_fit_shift: pick the vote's weights by shifted accuracy among those keeping this clean
    # accuracy (benchmarks/results/vote_frontier_pbc_cpu.md), instead of minimising log-loss.
    vote_clean_floor: float | None = None
    # The same for the stack. Without a floor its rows count alike, which cost 0.6 points clean on pbc-cpu
    # (pbc_cpu_stack_robust.md); with one, the shifted rows' weight and C are chosen on inner out-of-fold
    # scores (ensemble.stacking.select_candidate; benchmarks/results/stack_frontier_pbc_cpu.md).
    stack_fit_shift: list[str] = field(default_factory=list)
    stack_clean_floor: float | None = None

    def to_stage(self, method: str, seed: int) -> EnsembleConfig:
        fit_shift = self.vote_fit_shift if method == "vote" else self.stack_fit_shift
        return EnsembleConfig(
            method=method,
            calibrate=self.calibrate,
            tta="dihedral" if self.tta else None,
            seed=seed,
            fit_shift=list(fit_shift),
            fit_clean_floor=self.vote_clean_floor if method == "vote" else self.stack_clean_floor,
        )

    def validate(self) -> None:
        bad = sorted(set(self.methods) - {"vote", "stack"})
        if bad:
            raise ZooError(f"config: ensemble.methods {bad} unknown; use 'vote' and/or 'stack'")
        for method in ("vote", "stack"):
            families = getattr(self, f"{method}_fit_shift")
            if families:
                from zoo.shift import resolve_families

                try:
                    resolve_families(list(families))
                except ZooError as exc:
                    raise ZooError(f"config: ensemble.{method}_fit_shift: {exc}") from None
            floor = getattr(self, f"{method}_clean_floor")
            if floor is not None and (not families or not 0.0 < floor < 1.0):
                raise ZooError(
                    f"config: ensemble.{method}_clean_floor needs {method}_fit_shift and a fraction in (0, 1), "
                    f"got {floor}"
                )


@dataclass
class DistillSection:
    """``[distill]``: the distillation stage. Defaults come from :class:`~zoo.stage_config.DistillConfig`;
    batch size, learning rate, weight decay, augmentation, patience and seed come from ``[train]`` (:meth:`to_stage`)."""

    enabled: bool = False
    teacher: str = "vote"  # which ensemble method teaches
    student: str = DistillConfig.student
    params: dict[str, Any] = field(default_factory=dict)  # {}: the stage's default (a compact custom_cnn)
    epochs: int = DistillConfig.epochs
    temperature: float = DistillConfig.temperature
    alpha: float = DistillConfig.alpha
    image_size: int | None = DistillConfig.image_size  # student input size (default: the teacher ensemble's)
    # The student's augmentation policy (default: [train]'s). The teacher sees the same augmented pixels
    # (consistent teaching), so a photometric policy here teaches the student how a robust teacher
    # answers on shifted images, which flips and rotations alone never show it.
    augment: str | None = None

    def to_stage(self, train: TrainConfig) -> DistillConfig:
        return DistillConfig(
            student=self.student,
            params=dict(self.params) or None,
            epochs=self.epochs,
            alpha=self.alpha,
            temperature=self.temperature,
            batch_size=train.batch_size,
            learning_rate=train.learning_rate,
            weight_decay=train.weight_decay,
            augment=self.augment or train.augment,
            patience=train.patience,
            seed=train.seed,
            image_size=self.image_size,
        )


@dataclass
class ExportConfig:
    enabled: bool = False
    opset: int = DEFAULT_OPSET
    quantize: list[str] = field(default_factory=lambda: ["int8"])
    include: list[str] = field(default_factory=lambda: ["members", "ensembles", "student"])
    calibration_size: int = 256  # training images used to calibrate int8
    parity_images: int = 1000  # validation images used for the Keras-vs-ONNX parity check


@dataclass
class BenchConfig:
    """``[bench]``: the ``zoo bench`` stage over the run's exports (see export/bench/stage.py)."""

    enabled: bool = False
    batch_sizes: list[int] = field(default_factory=lambda: [1, 128])
    iterations: int = 30
    warmup: int = 3
    max_seconds: float = 10.0
    threads: int = 0
    engines: list[str] = field(default_factory=lambda: ["ort", "keras"])
    providers: list[str] = field(default_factory=lambda: ["cpu", "cuda", "tensorrt"])
    eval_images: int = 0  # val images scored per row (0 = all)

    def validate(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1 or self.iterations < 1 or self.warmup < 0:
            raise ZooError("config: bench.batch_sizes must be >= 1, bench.iterations >= 1 and bench.warmup >= 0")
        bad = sorted(set(self.engines) - {"ort", "keras"}) + sorted(set(self.providers) - {"cpu", "cuda", "tensorrt"})
        if bad:
            raise ZooError(
                f"config: bench engines/providers {bad} unknown; engines: ort, keras; providers: cpu, cuda, tensorrt"
            )


@dataclass
class PipelineConfig:
    name: str = "quickstart"
    output: str = "runs/quickstart"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    members: list[MemberConfig] = field(default_factory=lambda: [MemberConfig()])
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    ensemble: EnsembleSection = field(default_factory=EnsembleSection)
    distill: DistillSection = field(default_factory=DistillSection)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def validate(self) -> None:
        self.data.validate()
        self.bench.validate()
        self.train.validate()
        if not self.members:
            raise ZooError("config: 'members' must list at least one member")
        names = [m.run_name for m in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ZooError(f"config: two members share the run name(s) {dupes}; give them distinct 'name's")
        for n in names:
            if "/" in n or "\\" in n or n in (".", "..") or not n:
                raise ZooError(f"config: run name '{n}' must be a plain folder name")
        for m in self.members:
            from zoo.registry import get_spec

            get_spec(m.member)
            TrainConfig.from_dict({**self.train.to_dict(), **_checked_train(m.train, m.run_name)}).validate()
        self.evaluate.validate(names)
        self.ensemble.validate()
        if self.distill.augment is not None:
            from zoo.augment.spec import parse

            try:
                parse(self.distill.augment)
            except ZooError as exc:
                raise ZooError(f"config: distill.augment: {exc}") from None

    @property
    def member_image_sizes(self) -> list[int]:
        """The distinct input sizes the members train at, smallest first."""
        return sorted({m.image_size or self.data.image_size for m in self.members})

    @property
    def ensemble_input_size(self) -> int:
        """The size the ensembles (and by default the student) take: the largest member's; the others resize in-graph."""
        return self.member_image_sizes[-1]

    def sizes_text(self) -> str:
        """``64 px`` or ``64 and 96 px (ensembles at 96)``: how a report names the run's input sizes."""
        sizes = self.member_image_sizes
        if len(sizes) == 1:
            return f"{sizes[0]} px"
        return f"{', '.join(map(str, sizes[:-1]))} and {sizes[-1]} px (ensembles at {sizes[-1]})"

    def member_train(self, m: MemberConfig) -> TrainConfig:
        return TrainConfig.from_dict({**self.train.to_dict(), **_checked_train(m.train, m.run_name)})


def _checked_train(overrides: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ZooError(f"config: members '{where}' train: unknown key(s) {unknown}")
    checked = _build(TrainConfig, overrides, f"members.{where}.train", partial=True)
    return {k: getattr(checked, k) for k in overrides}


# ----------------------------------------------------------------------------- strict parsing
def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, where)
            except ZooError as exc:
                errors.append(str(exc))
        raise ZooError(errors[0] if errors else f"config: {where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ZooError(f"config: {where} must be a table, got {type(value).__name__}")
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ZooError(f"config: {where} must be a list, got {type(value).__name__}")
        return [_check(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list):
            raise ZooError(f"config: {where} must be a list, got {type(value).__name__}")
        return tuple(value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ZooError(f"config: {where} must be a table, got {type(value).__name__}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ZooError(f"config: {where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ZooError(f"config: {where} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ZooError(f"config: {where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ZooError(f"config: {where} must be a string, got {value!r}")
        return value
    return value


def _build(cls, data: dict[str, Any], where: str, partial: bool = False):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ZooError(f"config: unknown key(s) {unknown} in [{where or 'top level'}]; allowed: {sorted(names)}")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    if cls is TrainConfig and "phases" in kwargs:
        kwargs["phases"] = [p if isinstance(p, Phase) else Phase(**p) for p in kwargs["phases"]]
    return cls(**kwargs)


def parse(data: dict[str, Any]) -> PipelineConfig:
    cfg = _build(PipelineConfig, data, "")
    cfg.validate()
    return cfg


def load(path: str | Path | None = None) -> PipelineConfig:
    """Read and validate a pipeline TOML (``None``: the built-in quickstart)."""
    path = Path(path) if path else BUILTIN / "quickstart.toml"
    if not path.exists() and (BUILTIN / f"{path}.toml").exists():
        path = BUILTIN / f"{path}.toml"  # a built-in by name: `--config pbc-cpu`
    if path.exists() and not path.is_file():
        raise ZooError(f"{path}: not a regular file (a folder, FIFO or device); not read as a config")
    if not path.is_file():
        raise ZooError(
            f"{path}: config file not found (built-ins: {', '.join(p.stem for p in sorted(BUILTIN.glob('*.toml')))})"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ZooError(f"{path}: invalid TOML ({exc})") from None
    return parse(data)
