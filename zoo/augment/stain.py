"""Colour deconvolution constants shared by the training op (TensorFlow) and ``shifted_copy`` (NumPy).

Stain jitter works in optical density (OD = -log(I/I0)), where stain amounts add linearly,
projected on the haematoxylin/eosin/DAB basis of Ruifrok & Johnston (2001), the same
matrix as ``skimage.color.rgb_from_hed``. PBC smears are May-Grünwald-Giemsa stained, not
H&E, but the basis still separates a bluish-purple nuclear stain from a pink cytoplasm/RBC
stain, which is what lab-to-lab differences mostly move. Scaling/shifting each channel is the
"HED perturbation" of Tellez et al. (2018, 2019). I0 = 256 with a +1 offset keeps log finite
and makes the transform exactly invertible on 0..255.
"""

from __future__ import annotations

import numpy as np

RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
# Additive shifts are this many OD units per unit of sigma (background OD is ~0.1–0.3).
BETA_SCALE = 0.25


def rgb_to_hed(images: np.ndarray) -> np.ndarray:
    od = -np.log((images.astype(np.float64) + 1.0) / 256.0)
    return od @ HED_FROM_RGB


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hed` as float64 in 0..255 (clipped)."""
    return np.clip(256.0 * np.exp(-(hed @ RGB_FROM_HED)) - 1.0, 0.0, 255.0)
