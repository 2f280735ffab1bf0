"""A deterministic "same cells, another lab" copy of a validation set.

The seed project estimated robustness by validating on a copy with RandAugment applied to 70%
of the images. That mixes geometry (which a rotation-invariant cell classifier should shrug
off) with photometric change. Lab-to-lab shift is mostly photometric and *systematic*: another
stain batch and protocol, another microscope's illumination, focus and camera, another JPEG
setting. So the copy applies

- one lab-level change shared by every image (drawn once from ``seed``): a stain shift in
  HED optical-density space, a white-balance gain per RGB channel and a gamma;
- per-image variation around it: smaller stain jitter, Gaussian blur (focus), Gaussian noise
  (sensor) and JPEG re-compression.

``severity`` in 0..1 scales every magnitude along the *same* random directions (0 returns the
images unchanged), so severities of one seed are comparable. It is implemented in NumPy/SciPy/
PIL, independently of the TensorFlow training ops, and parameterised differently from them —
but it perturbs the same families the ``shift`` training preset covers, so accuracy on it is
an optimistic proxy for a real external lab, not a substitute for one.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from zoo.augment.stain import hed_to_rgb, rgb_to_hed
from zoo.errors import ZooError

REFERENCE_SIZE = 128  # blur sigmas are given for 128-px images and scaled to the actual size


def _lab_params(rng: np.random.Generator, severity: float) -> dict[str, Any]:
    s = severity
    return {
        "stain_scale": 1.0 + rng.uniform(-1, 1, 3) * 0.25 * s,
        "stain_shift": rng.uniform(-1, 1, 3) * 0.06 * s,
        "white_balance": 1.0 + rng.uniform(-1, 1, 3) * 0.06 * s,
        "gamma": float(np.exp(rng.uniform(-1, 1) * 0.25 * s)),
    }


def shift_description(seed: int = 0, severity: float = 0.5) -> dict[str, Any]:
    """The lab-level parameters ``shifted_copy(…, seed, severity)`` uses, JSON-ready (for cards)."""
    lab = _lab_params(np.random.default_rng(seed), float(severity))
    return {
        "seed": seed,
        "severity": severity,
        "lab": {k: (np.round(v, 4).tolist() if isinstance(v, np.ndarray) else round(v, 4)) for k, v in lab.items()},
        "per_image": "stain jitter, Gaussian blur, Gaussian noise, JPEG re-compression",
    }


def shifted_copy(images: np.ndarray, seed: int = 0, severity: float = 0.5) -> np.ndarray:
    """Return a shifted uint8 copy of ``images`` (N, H, W, 3); same inputs give the same bytes."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ZooError(f"shifted_copy needs uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    try:
        severity = float(severity)
    except (TypeError, ValueError):
        raise ZooError(f"shift severity must be a number in 0..1, got {severity!r}") from None
    if not 0.0 <= severity <= 1.0:
        raise ZooError(f"shift severity must be in 0..1, got {severity}")
    if severity == 0.0 or len(images) == 0:
        return images.copy()
    n, h, w, _ = images.shape
    s = severity
    rng = np.random.default_rng(seed)
    lab = _lab_params(rng, s)
    # per-image draws, all made up front so the result does not depend on chunking
    alpha = lab["stain_scale"] * (1.0 + rng.uniform(-1, 1, (n, 3)) * 0.08 * s)
    beta = lab["stain_shift"] + rng.uniform(-1, 1, (n, 3)) * 0.02 * s
    sigma = rng.uniform(0.3, 1.0, n) * 1.2 * s * (min(h, w) / REFERENCE_SIZE)
    noise_std = rng.uniform(0.5, 1.0, n) * 6.0 * s
    quality = np.round(95 - rng.uniform(0.5, 1.0, n) * 60 * s).astype(int)
    noise_seeds = rng.integers(0, 2**63 - 1, n)

    out = np.empty_like(images)
    for i in range(n):
        hed = rgb_to_hed(images[i]) * alpha[i] + beta[i]
        rgb = hed_to_rgb(hed) * lab["white_balance"]
        rgb = 255.0 * np.power(np.clip(rgb / 255.0, 0.0, 1.0), lab["gamma"])
        rgb = gaussian_filter(rgb, sigma=(sigma[i], sigma[i], 0), mode="reflect")
        rgb = rgb + np.random.default_rng(noise_seeds[i]).normal(0.0, noise_std[i], rgb.shape)
        img = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality[i]))
        buf.seek(0)
        with Image.open(buf) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    return out
