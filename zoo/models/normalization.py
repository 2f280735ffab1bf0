"""Colour constancy inside the model graph: per-image input normalisation every family can use.

Why in the graph: lab-to-lab shift is mostly photometric (stain batch, white balance, lamp
brightness, camera gamma) and *systematic per image*. A member that standardises each image by
its own statistics before the first convolution cannot see a per-channel gain or offset at all,
whatever its training data was, and the layer travels with ``model.keras`` and the ONNX export
(it is only ReduceMean/Sub/Mul/Div/Sqrt/Log), so no caller can forget to apply it.

Modes (``input_norm=`` of a member; raw RGB 0..255 in, roughly zero-mean unit-scale out):

- ``none``: the family's own fixed scaling (e.g. to [-1, 1], or ImageNet statistics).
- ``grayworld``: ``x / mean_c - 1`` per image and channel (gray-world white balance;
  invariant to a per-channel gain).
- ``channel_std``: ``(x - mean_c) / std_c`` per image and channel (invariant to a per-channel
  gain *and* offset, so to brightness, contrast and white balance; not to gamma).
- ``od_std``: the same standardisation in optical density ``-log((x+1)/256)`` (Beer–Lambert:
  stain amounts add there). A per-channel gain becomes an offset (removed) and a gamma
  becomes a common scale (removed), so it is invariant to white balance, brightness *and*
  gamma, and to a change of stain concentration that scales a channel's density.

None of them removes saturation or hue rotations (they mix channels); augmentation has to cover
those. Statistics are per image, so a model's prediction never depends on the batch.
"""

from __future__ import annotations

import keras
from keras import ops

from zoo.errors import ZooError

INPUT_NORMS = ("none", "grayworld", "channel_std", "od_std")
# Variance floors: 1 grey level in 0..255 units; 0.01 in optical density (flat images map to ~0).
_EPS = {"grayworld": 1.0, "channel_std": 1.0, "od_std": 1e-4}


def check_input_norm(mode: str) -> str:
    """Validate a member's ``input_norm`` parameter (ZooError listing the choices)."""
    if mode not in INPUT_NORMS:
        raise ZooError(f"input_norm '{mode}' is not one of {', '.join(INPUT_NORMS)}")
    return mode


@keras.saving.register_keras_serializable(package="zoo")
class InputNorm(keras.layers.Layer):
    """Per-image, per-channel colour normalisation of raw RGB pixels (see module docstring)."""

    def __init__(self, mode: str = "channel_std", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_input_norm(mode)

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.mode == "none":
            return x
        if self.mode == "od_std":
            x = -ops.log((x + 1.0) / 256.0)
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        if self.mode == "grayworld":
            return x / (mean + _EPS["grayworld"]) - 1.0
        centred = x - mean
        var = ops.mean(centred * centred, axis=(1, 2), keepdims=True)
        return centred / ops.sqrt(var + _EPS[self.mode])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def apply_input_norm(x, mode: str, default):
    """``default`` (the family's fixed scaling layer) for ``none``, else :class:`InputNorm`.

    Families call this on their input tensor, e.g.
    ``x = apply_input_norm(inputs, input_norm, layers.Rescaling(1 / 127.5, offset=-1.0, name="scale"))``.
    """
    if check_input_norm(mode) == "none":
        return default(x)
    return InputNorm(mode, name="input_norm")(x)
