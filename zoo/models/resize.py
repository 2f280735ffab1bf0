"""An in-graph resize that computes what the data loader computes: PIL's antialiased bilinear filter.

Why: the loader makes every training image with ``PIL.Image.resize(..., BILINEAR)``, which widens
the triangle filter by the downscale factor (antialiasing). A member trained at 64 px inside an
ensemble that takes 96 px used to see the 96 px image through Keras ``Resizing`` (bilinear, no
antialias): 2–3 source pixels per output pixel instead of PIL's 4–5, i.e. aliased granules it never
saw in training, which cost it about a point of val accuracy (benchmarks/results/ensemble_pbc_mixed.md).

PIL's resize is linear and separable: ``out = A_h · image · A_wᵀ`` per channel, with ``A`` the
(out × in) matrix of normalised filter weights. The layer holds both matrices as constants and
applies them as two MatMuls, which every runtime runs and tf2onnx converts as is (antialiased
``tf.image.resize`` and ``ResizeArea`` do not convert). The only difference from the loader is
that PIL rounds to uint8 after each pass; here values stay float (within one grey level).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def pil_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` weights of PIL's BILINEAR resample along one axis (``reducing_gap=None``).

    Mirrors Pillow's ``precompute_coeffs``: support 1 widened by ``max(in/out, 1)``, output pixel
    ``i`` centred at ``(i + 0.5) · in/out`` in input coordinates, weights normalised per row.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        x = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((x - center + 0.5) / filterscale))
        if w.sum() > 0:
            m[i, lo:hi] = w / w.sum()
    return m.astype(np.float32)


@keras.saving.register_keras_serializable(package="zoo")
class PilBilinearResize(keras.layers.Layer):
    """``(N, H, W, C) -> (N, height, width, C)`` with PIL's antialiased bilinear filter (see module docstring)."""

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def build(self, input_shape):
        in_h, in_w = int(input_shape[1]), int(input_shape[2])
        # Constants, not weights: they follow from the shapes alone and never train. Kept as numpy
        # and made tensors inside call(), so a traced graph embeds them (tf2onnx would otherwise turn
        # captured tensors into extra graph inputs).
        self._a_h_t = pil_bilinear_matrix(in_h, self.height).T  # (H, height)
        self._a_w_t = pil_bilinear_matrix(in_w, self.width).T  # (W, width)
        self.built = True

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        a_h_t = ops.convert_to_tensor(self._a_h_t.astype(self.compute_dtype))
        a_w_t = ops.convert_to_tensor(self._a_w_t.astype(self.compute_dtype))
        x = ops.transpose(x, (0, 3, 2, 1))  # N, C, W, H
        x = ops.matmul(x, a_h_t)  # N, C, W, height
        x = ops.transpose(x, (0, 1, 3, 2))  # N, C, height, W
        x = ops.matmul(x, a_w_t)  # N, C, height, width
        return ops.transpose(x, (0, 2, 3, 1))  # N, height, width, C

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}
