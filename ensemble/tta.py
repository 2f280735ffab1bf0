"""Test-time augmentation over the dihedral group D4 (flips and 90° rotations).

Blood-cell smears have no preferred orientation, so each of the 8 symmetries of the square
is an equally valid view; averaging a model's probabilities over them removes
orientation-specific errors. Transform ``flip_rotK`` is: mirror left-right
(``x[:, :, ::-1]``) *then* rotate ``K`` degrees counter-clockwise
(``np.rot90(x, K/90, axes=(1, 2))``) on ``(N, H, W, 3)`` batches — the exact definition the
ONNX exporter must reproduce. TTA probabilities are ``mean_t model(t(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.errors import ZooError

TRANSFORMS = ("identity", "rot90", "rot180", "rot270", "flip", "flip_rot90", "flip_rot180", "flip_rot270")
PRESETS = {
    "dihedral": TRANSFORMS,
    "all": TRANSFORMS,
    "d4": TRANSFORMS,
    "flips": ("identity", "flip"),
    "rot90": ("identity", "rot90", "rot180", "rot270"),
}


def parse(spec: str | Sequence[str] | None) -> list[str] | None:
    """``None``/"none" → no TTA; a preset name (dihedral, flips, rot90) or comma list of transforms."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return list(TRANSFORMS)
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    names = [n for n in names if n]
    if not names or names == ["none"]:
        return None
    if len(names) == 1 and names[0] in PRESETS:
        return list(PRESETS[names[0]])
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise ZooError(
            f"unknown TTA transform(s) {unknown}; choose from {list(TRANSFORMS)} or a preset {sorted(PRESETS)}"
        )
    if len(set(names)) != len(names):
        raise ZooError(f"duplicate TTA transforms in {names}")
    return names


def apply(name: str, images: np.ndarray) -> np.ndarray:
    """Transform a ``(N, H, W, C)`` batch (square images)."""
    if name not in TRANSFORMS:
        raise ZooError(f"unknown TTA transform '{name}'")
    x = images
    if name.startswith("flip"):
        x = x[:, :, ::-1]
    k = 0 if name in ("identity", "flip") else int(name.rsplit("rot", 1)[1]) // 90
    if k:
        x = np.rot90(x, k, axes=(1, 2))
    return np.ascontiguousarray(x)


def predict(
    model: Any, images: np.ndarray, transforms: Sequence[str] | None = None, batch_size: int = 64
) -> np.ndarray:
    """``(N, C)`` float32 probabilities of a Keras model, averaged over ``transforms`` (None: no TTA)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ZooError(f"TTA needs square (N, S, S, 3) images, got {images.shape}")
    names = list(transforms) if transforms else ["identity"]
    x = images.astype(np.float32, copy=False)
    total = None
    for name in names:
        p = np.asarray(model.predict(apply(name, x), batch_size=batch_size, verbose=0), dtype=np.float64)
        total = p if total is None else total + p
    return (total / len(names)).astype(np.float32)
