"""``custom_cnn``: the course project's from-scratch baseline, rebuilt as a compact post-activation ResNet.

Each residual block is ResNet v1.5-style post-activation: Conv-BN-ReLU, Conv-BN, add the
shortcut, then ReLU (BatchNorm and ReLU come after each convolution, not before it).

Why this shape: the course project's plain CNN generalised poorly, and a plain CNN measured here swung
between 31% and 91% val accuracy epoch to epoch. Residual stages with BatchNorm train stably;
an early stride-2 stem keeps it fast on a CPU (all spatial work happens at ≤ S/2); the
head follows the course project's recipe (dropout 0.35, L1L2 1e-3). BatchNorm momentum is lowered to
0.9 so the running statistics used at inference track the weights closely while the learning
rate is still high. Preprocessing (scaling to [-1, 1]) is inside the model, so it takes raw
RGB pixels like every zoo member.
"""

from __future__ import annotations

import keras
from keras import layers

from zoo.models.head import classifier_head
from zoo.models.normalization import apply_input_norm
from zoo.registry import register_model

BN_MOMENTUM = 0.9


def _bn(x, name):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-3, name=name)(x)


def _residual_block(x, filters: int, stride: int, name: str):
    """Post-activation block: Conv-BN-ReLU, Conv-BN, + shortcut (projected when the shape changes), ReLU."""
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(_bn(y, f"{name}_bn1"))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(y, f"{name}_bn2")
    if stride != 1 or shortcut.shape[-1] != filters:
        if stride != 1:
            shortcut = layers.AveragePooling2D(stride, padding="same", name=f"{name}_pool")(shortcut)
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = _bn(shortcut, f"{name}_proj_bn")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


@register_model(
    family="custom_cnn",
    default_image_size=64,
    description="Compact residual CNN trained from scratch (course-project baseline, made strong); CPU-friendly.",
)
def custom_cnn(
    num_classes: int,
    image_size: int,
    widths: tuple[int, ...] = (32, 64, 128, 256),
    depths: tuple[int, ...] = (1, 1, 2, 1),
    stem_width: int = 24,
    dropout: float = 0.35,
    l1l2: float = 1e-3,
    input_norm: str = "none",
):
    """``input_norm``: per-image colour normalisation in the graph (:mod:`zoo.models.normalization`)."""
    if len(widths) != len(depths):
        raise ValueError("widths and depths must have the same length")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = apply_input_norm(inputs, input_norm, layers.Rescaling(1 / 127.5, offset=-1.0, name="scale"))
    x = layers.Conv2D(stem_width, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(_bn(x, "stem_bn"))
    for s, (width, depth) in enumerate(zip(widths, depths)):
        for b in range(depth):
            stride = 2 if (b == 0 and s > 0) else 1
            x = _residual_block(x, int(width), stride, name=f"s{s}b{b}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = classifier_head(x, num_classes, dropout=dropout, l1l2=l1l2)
    return keras.Model(inputs, outputs, name="custom_cnn")
