"""The augmentation spec language: names, parameters, presets, and their validation.

A spec is a comma-separated list of items, each ``name`` or ``name:v1:v2`` (positional, in the
order listed by :func:`describe`) or ``name:key=value``; presets (``seed``, ``shift``,
``none``) expand in place; a later item for the same name overrides only the parameters it
gives; ``-name`` removes an op a preset added. Examples::

    flip_rot90,stain:0.3,randaugment:2:0.5,mixup:0.2
    shift,blur:sigma=2.5,-jpeg

Ops always run in a fixed stage order (geometry → colour → degradation → RandAugment →
occlusion → label mixing) whatever order the spec lists them in, so a spec means one thing;
the canonical form (:func:`canonical`) spells every parameter and round-trips. This module is
pure Python (no TensorFlow) so the CLI can validate and list policies cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError

STAGES = ("geometry", "colour", "degradation", "randaugment", "occlusion", "mixing")


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    lo: float
    hi: float
    integer: bool = False
    help: str = ""

    def parse(self, op: str, raw: str | float | int) -> float | int:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ZooError(f"augmentation '{op}': {self.name}={raw!r} is not a number") from None
        if self.integer:
            if value != int(value):
                raise ZooError(f"augmentation '{op}': {self.name} must be an integer, got {raw!r}")
            value = int(value)
        if not self.lo <= value <= self.hi:
            raise ZooError(f"augmentation '{op}': {self.name}={raw} is outside {_fmt(self.lo)}..{_fmt(self.hi)}")
        return value


@dataclass(frozen=True)
class OpInfo:
    name: str
    stage: str
    help: str
    params: tuple[Param, ...] = ()
    mixes_labels: bool = False
    backend: str = "tf"  # "tf" (own ops), "keras" (core keras.layers), "keras_cv"
    # Shift-suite families (zoo.shift.FAMILIES) this op trains for. Declared conservatively: an op that
    # touches a family at all counts, so out-of-family results (the only basis for robustness claims)
    # never include a family the model saw in training.
    families: tuple[str, ...] = ()


def _p(default: float) -> Param:
    return Param("p", default, 0.0, 1.0, help="probability per image")


OPS: dict[str, OpInfo] = {
    op.name: op
    for op in (
        OpInfo(
            "flip_rot90",
            "geometry",
            "random horizontal/vertical flips and 90° rotations (all 8 symmetries of a square; cells have no orientation)",
        ),
        OpInfo(
            "stain",
            "colour",
            "stain perturbation in HED colour-deconvolution space (Tellez et al. 2018): per-channel scale 1±sigma and shift ±sigma·0.25 optical density",
            (Param("sigma", 0.2, 0.0, 1.0, help="strength"), _p(1.0)),
            families=("colour",),
        ),
        OpInfo(
            "color",
            "colour",
            "brightness ±0.2s, contrast ×(1±0.4s), saturation ×e^±0.7s, hue ±0.05s turn and gamma e^±0.4s per image (s = strength)",
            (Param("strength", 0.3, 0.0, 1.0, help="0 = none, 1 = very strong"), _p(1.0)),
            families=("colour", "illumination"),  # saturation/hue; brightness/contrast/gamma
        ),
        OpInfo(
            "augmix",
            "colour",
            "AugMix-style mixing (Hendrycks et al. 2020): width chains of depth random photometric ops (brightness, white balance, contrast, gamma, HED stain scale, saturation) mixed with Dirichlet weights, blended with the original",
            (
                Param(
                    "strength",
                    0.5,
                    0.0,
                    1.0,
                    help="op magnitude (1: brightness ×e^±0.5, white balance ×e^±0.3, stain ×1±0.6)",
                ),
                Param("width", 3, 1, 5, integer=True, help="chains mixed"),
                Param("depth", 2, 1, 4, integer=True, help="ops per chain"),
                _p(1.0),
            ),
            families=("colour", "illumination"),  # white balance/stain/saturation; brightness/contrast/gamma
        ),
        OpInfo(
            "blur",
            "degradation",
            "Gaussian blur with a per-image sigma from 6 levels in [sigma/4, sigma] (focus differences between microscopes); sigma is in pixels of a 128-px image, scaled to the actual size",
            (Param("sigma", 1.5, 0.0, 8.0, help="largest sigma, pixels at 128 px"), _p(0.3)),
            families=("optics",),  # defocus-like; motion blur and chromatic shift are not, but the family counts
        ),
        OpInfo(
            "noise",
            "degradation",
            "additive Gaussian noise with a per-image std in [0, std] (0..255 units; camera noise)",
            (Param("std", 8.0, 0.0, 64.0, help="largest std in 0..255 units"), _p(0.3)),
            families=("sensor",),
        ),
        OpInfo(
            "jpeg",
            "degradation",
            "JPEG re-compression at a per-image quality in [quality, 95] (storage differences between labs)",
            (Param("quality", 50, 5, 95, integer=True, help="lowest JPEG quality"), _p(0.3)),
            families=("sensor",),
        ),
        OpInfo(
            "randaugment",
            "randaugment",
            "keras.layers.RandAugment (num_ops ops of 11, same ops per batch, per-image magnitudes)",
            (
                Param("num_ops", 2, 1, 11, integer=True, help="ops per image"),
                Param("factor", 0.5, 0.0, 1.0, help="magnitude"),
                _p(1.0),
            ),
            backend="keras",
            # its 11 ops: colour degeneration, solarization (colour); brightness, contrast, auto-contrast,
            # equalization (illumination); sharpness, which also blurs (optics); posterization (sensor);
            # shear/translation/rotation change no scale
            families=("colour", "illumination", "optics", "sensor"),
        ),
        OpInfo(
            "center_mask",
            "occlusion",
            "the course project's custom masking: replace everything outside a centred disc (radius in [radius, 1]·half-size) by the background colour of the image border, hiding neighbouring cells",
            (Param("radius", 0.6, 0.1, 1.5, help="smallest disc radius as a fraction of half the image size"), _p(0.3)),
        ),
        OpInfo(
            "cutout",
            "occlusion",
            "CutOut / random erasing of one zero-filled rectangle (keras.layers.RandomErasing)",
            (Param("scale", 0.25, 0.02, 0.9, help="largest erased area fraction"), _p(0.5)),
            backend="keras",
            families=("artefacts",),  # a foreign occluder on the smear, like deposits or debris
        ),
        OpInfo(
            "gridmask",
            "occlusion",
            "GridMask (keras_cv.layers.GridMask): a rotated grid of zero-filled squares",
            (Param("ratio", 0.5, 0.05, 0.9, help="largest grid-block/spacing ratio"), _p(0.5)),
            backend="keras_cv",
            families=("artefacts",),
        ),
        OpInfo(
            "cutmix",
            "mixing",
            "CutMix (keras.layers.CutMix): paste a patch of another image of the batch; labels mixed by area",
            (Param("factor", 1.0, 0.01, 1.0, help="Beta(α, α) concentration upper bound"), _p(0.5)),
            mixes_labels=True,
            backend="keras",
            families=("artefacts",),  # pasted patches occlude part of the cell
        ),
        OpInfo(
            "mixup",
            "mixing",
            "MixUp (keras.layers.MixUp): blend with another image of the batch; labels blended alike",
            (Param("alpha", 0.2, 0.01, 1.0, help="Beta(α, α) concentration"), _p(0.5)),
            mixes_labels=True,
            backend="keras",
        ),
    )
}

PRESETS: dict[str, str] = {
    "none": "",
    # The course project's recipe (keras-cv guide style): RandAugment, CutMix, MixUp, GridMask,
    # CutOut and flips; its custom masking was preprocessing there and is left out here.
    "course": "flip_rot90,randaugment:2:0.3:0.7,gridmask:0.5:0.3,cutout:0.25:0.3,cutmix:1.0:0.3,mixup:0.2:0.3",
    # Shift-aware: symmetries + strong stain/colour + microscope/camera degradations, with only
    # light geometric/occluding extras so the cell itself stays readable.
    "shift": "flip_rot90,stain:0.35:0.9,color:0.5:0.8,blur:1.5:0.3,noise:8:0.3,jpeg:40:0.25,randaugment:1:0.2:0.2,cutout:0.15:0.25",
    # The same ops at the same magnitudes (so the same families and the same reach), each drawn less
    # often: about one image in eight arrives photometrically untouched and most carry one or two
    # changes, not five. Under `shift` a 96 px custom_cnn fitted only 91% of its augmented training
    # batches and lost 2.4 clean val points (benchmarks/results/pbc_cpu_v2.md); this trades some of
    # the strength back for clean accuracy.
    "shift_mixed": "flip_rot90,stain:0.35:0.5,color:0.5:0.4,blur:1.5:0.2,noise:8:0.2,jpeg:40:0.15,randaugment:1:0.2:0.1,cutout:0.15:0.2",
}
# Earlier names still read (configs and cards written before the rename): "seed" meant the course project.
PRESET_ALIASES: dict[str, str] = {"seed": "course"}


@dataclass(frozen=True)
class OpSpec:
    name: str
    params: Mapping[str, float | int] = field(default_factory=dict)

    @property
    def info(self) -> OpInfo:
        return OPS[self.name]

    def text(self) -> str:
        values = [_fmt(self.params[p.name]) for p in self.info.params]
        return ":".join([self.name, *values])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "stage": self.info.stage, "params": dict(self.params)}


def available_policies() -> list[str]:
    """Op names and preset names, sorted (what a spec item may be called)."""
    return sorted(set(OPS) | set(PRESETS))


def _unknown(name: str) -> ZooError:
    return ZooError(
        f"unknown augmentation '{name}'; ops: {', '.join(sorted(OPS))}; presets: {', '.join(sorted(PRESETS))}"
        " (spec syntax: 'name:v1:v2' or 'name:key=value', comma-separated)"
    )


def _items(spec: str | Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, Mapping):  # Policy.to_dict() output, e.g. read back from a card
        if "spec" not in spec:
            raise ZooError("augmentation dict needs a 'spec' key (as written by Policy.to_dict())")
        return _items(spec["spec"])
    if isinstance(spec, str):
        return [s.strip() for s in spec.split(",") if s.strip()]
    out: list[str] = []
    for s in spec:
        if not isinstance(s, str):
            raise ZooError(f"augmentation spec items must be strings, got {s!r}")
        out.extend(_items(s))
    return out


def parse(spec: str | Sequence[str] | Mapping[str, Any] | None, _depth: int = 0) -> list[OpSpec]:
    """Spec -> ops in stage order, each with every parameter filled in and validated."""
    chosen: dict[str, dict[str, float | int]] = {}
    for item in _items(spec):
        if item.startswith("-"):
            name = item[1:].strip()
            if name not in OPS:
                raise _unknown(name)
            chosen.pop(name, None)
            continue
        name, *args = [a.strip() for a in item.split(":")]
        name = PRESET_ALIASES.get(name, name)
        if name in PRESETS:
            if args:
                raise ZooError(f"augmentation preset '{name}' takes no parameters (override ops after it instead)")
            for op in parse(PRESETS[name], _depth + 1):
                chosen[op.name] = dict(op.params)
            continue
        if name not in OPS:
            raise _unknown(name)
        chosen[name] = {**chosen.get(name, {}), **_parse_args(OPS[name], args)}
    ops = []
    for name, given in chosen.items():
        info = OPS[name]
        ops.append(OpSpec(name, {p.name: given.get(p.name, p.default) for p in info.params}))
    return sorted(ops, key=lambda o: STAGES.index(o.info.stage))


def _parse_args(info: OpInfo, args: list[str]) -> dict[str, float | int]:
    params = {p.name: p for p in info.params}
    if len(args) > len(info.params):
        takes = ", ".join(p.name for p in info.params) or "no parameters"
        raise ZooError(f"augmentation '{info.name}' takes {takes}; got {len(args)} values ({':'.join(args)})")
    out: dict[str, float | int] = {}
    for i, arg in enumerate(args):
        if "=" in arg:
            key, _, raw = (s.strip() for s in arg.partition("="))
            if key not in params:
                raise ZooError(
                    f"augmentation '{info.name}' has no parameter '{key}'; it takes: {', '.join(params) or 'none'}"
                )
            param = params[key]
        else:
            if arg == "":
                continue  # 'blur::0.5' keeps the default sigma
            param = info.params[i]
        out[param.name] = param.parse(info.name, raw if "=" in arg else arg)
    return out


def covered_families(spec: str | Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """Shift-suite families a policy trains for: the union of its ops' ``families`` (ops with p = 0 add none)."""
    covered = set()
    for op in parse(spec):
        if op.params.get("p", 1.0) > 0:
            covered.update(op.info.families)
    return sorted(covered)


def canonical(ops: Sequence[OpSpec]) -> str:
    """The spec string that rebuilds exactly these ops ("none" when empty)."""
    return ",".join(op.text() for op in ops) or "none"


def describe() -> str:
    """Human-readable list of ops, their parameters and presets (for CLI help and errors)."""
    lines = ["augmentation ops (spec 'name:v1:v2' or 'name:key=value', comma-separated):"]
    for op in OPS.values():
        params = ":".join(f"{p.name}={_fmt(p.default)}[{_fmt(p.lo)}..{_fmt(p.hi)}]" for p in op.params)
        lines.append(f"  {op.name}{':' + params if params else ''} — {op.help}")
    lines.append("presets:")
    for name, text in PRESETS.items():
        lines.append(f"  {name} = {canonical(parse(text)) if text else 'no augmentation'}")
    return "\n".join(lines)


def _fmt(v: float | int) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"
