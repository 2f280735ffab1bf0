"""The shift suite: what another lab's smears look like, family by family, at five severities.

Like ImageNet-C, but for blood smears. Six families of acquisition change (see
:mod:`zoo.shift.corruptions` for what each corruption models)::

    colour        channel_gain, white_balance, hed_stain, saturation, hue
    illumination  brightness, gamma, contrast, vignetting
    optics        defocus, motion_blur, chromatic_shift
    sensor        gaussian_noise, poisson_noise, jpeg, pixelate
    artefacts     stain_deposits, bubbles, debris
    geometry      zoom_in, zoom_out

API (used by ``zoo evaluate --shift-suite``, the pipeline and the robustness benchmark)::

    from zoo import shift
    shift.FAMILIES                                  # family -> corruption names
    x2 = shift.corrupt(images, "colour", 3, seed=0) # uint8 (N, H, W, 3) in and out
    x2 = shift.corrupt(images, "defocus", 5, seed=0)
    x2 = shift.corrupt_mixture(images, ["colour", "optics"], (2, 3), seed=0)  # one family+severity per image
    result = shift.evaluate_suite(predict_fn, images, labels, class_names)

``corrupt`` is deterministic: the same (images, name, severity, seed) give the same bytes. A
family draws one of its corruptions per image (from ``seed`` alone), so a family cell mixes
its corruptions; the five severities of one seed share every random direction, so severity
is monotone image by image. Leave-one-family-out is the protocol for robustness claims: a
model is credited only for families its training augmentation did not cover
(:mod:`zoo.shift.families`, :func:`zoo.shift.suite.split_families`).
"""

from __future__ import annotations

import zlib

import numpy as np

from zoo.errors import ZooError
from zoo.shift.corruptions import CORRUPTIONS, Corruption

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "SEVERITIES",
    "Corruption",
    "corrupt",
    "evaluate_suite",
    "family_of",
    "resolve_families",
]

FAMILY_ORDER = ("colour", "illumination", "optics", "sensor", "artefacts", "geometry")
FAMILIES: dict[str, list[str]] = {f: [c.name for c in CORRUPTIONS.values() if c.family == f] for f in FAMILY_ORDER}
SEVERITIES = (1, 2, 3, 4, 5)
CHUNK = 256  # images corrupted at once (bounds the memory of the artefact masks)


def family_of(name: str) -> str:
    """The family of a corruption name (or the family itself)."""
    if name in FAMILIES:
        return name
    if name in CORRUPTIONS:
        return CORRUPTIONS[name].family
    raise _unknown(name)


def _unknown(name: str) -> ZooError:
    return ZooError(
        f"unknown shift family or corruption '{name}'; families: {', '.join(FAMILIES)}; "
        f"corruptions: {', '.join(CORRUPTIONS)}"
    )


def resolve_families(families: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``None``/"all" -> every family; "colour,optics" or a list -> those, validated, in suite order."""
    if families is None:
        return list(FAMILIES)
    items = (
        [s.strip() for s in families.split(",")] if isinstance(families, str) else [str(s).strip() for s in families]
    )
    items = [s for s in items if s]
    if not items or items == ["all"]:
        return list(FAMILIES)
    bad = [s for s in items if s not in FAMILIES]
    if bad:
        raise ZooError(
            f"unknown shift famil{'y' if len(bad) == 1 else 'ies'} {bad}; choose from {', '.join(FAMILIES)} (or 'all')"
        )
    return [f for f in FAMILIES if f in items]


def _seed(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


def _check(images: np.ndarray, severity: int) -> tuple[np.ndarray, int]:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ZooError(f"the shift suite needs uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ZooError(f"shift severity must be an integer 0..5, got {severity!r}")
    return images, int(severity)


def corrupt(images: np.ndarray, family_or_corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """A corrupted uint8 copy of ``images`` (N, H, W, 3); severity 0 returns an unchanged copy."""
    images, severity = _check(images, severity)
    name = family_or_corruption
    if name not in FAMILIES and name not in CORRUPTIONS:
        raise _unknown(name)
    if severity == 0 or len(images) == 0:
        return images.copy()
    if name in FAMILIES:
        members = FAMILIES[name]
        pick = _seed(seed, name).integers(0, len(members), len(images))
        out = np.empty_like(images)
        for j, c in enumerate(members):
            idx = np.flatnonzero(pick == j)
            if len(idx):
                out[idx] = corrupt(images[idx], c, severity, seed)
        return out
    c = CORRUPTIONS[name]
    rng = _seed(seed, name)
    level = c.levels[severity - 1]
    out = np.empty_like(images)
    for start in range(0, len(images), CHUNK):
        x = images[start : start + CHUNK].astype(np.float32)
        out[start : start + CHUNK] = np.clip(np.rint(c.fn(x, level, rng)), 0, 255).astype(np.uint8)
    return out


def corrupt_mixture(
    images: np.ndarray,
    families: str | list[str] | tuple[str, ...] | None = None,
    severities: tuple[int, ...] | list[int] = SEVERITIES,
    seed: int = 0,
) -> np.ndarray:
    """Each image corrupted by one family and one severity drawn from ``families`` × ``severities`` (by seed).

    For fitting or augmenting on shifted data while holding families out (leave-one-family-out):
    pass only the families the model may see.
    """
    images, _ = _check(images, 0)
    fams = resolve_families(families)
    sev = [int(s) for s in severities]
    if not sev or any(not 1 <= s <= 5 for s in sev):
        raise ZooError(f"shift severities must be in 1..5, got {severities}")
    rng = _seed(seed, "mixture")
    f_idx, s_idx = rng.integers(0, len(fams), len(images)), rng.integers(0, len(sev), len(images))
    out = np.empty_like(images)
    for i, fam in enumerate(fams):
        for j, s in enumerate(sev):
            rows = np.flatnonzero((f_idx == i) & (s_idx == j))
            if len(rows):
                out[rows] = corrupt(images[rows], fam, s, seed)
    return out


def evaluate_suite(*args, **kwargs):
    """See :func:`zoo.shift.suite.evaluate_suite` (imported on use: it needs scikit-learn)."""
    from zoo.shift.suite import evaluate_suite as _run

    return _run(*args, **kwargs)
