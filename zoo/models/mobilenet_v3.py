"""``mobilenet_v3``: a MobileNetV3-style network sized for 64–128 px cells on a CPU.

Why another family: ensembles gain from members that err differently, and distillation needs
small students. Inverted residual blocks (1×1 expand, depthwise k×k, squeeze-excitation,
1×1 project) with hard-swish are cheap on CPUs and export to ONNX as plain ops (hard-swish is
``x · relu6(x + 3) / 6``, SE is pooling + 1×1 convs + multiply; tf2onnx 1.17 converts both).
``keras.applications.MobileNetV3Small`` downsamples 32× (a 2×2 map at 64 px), so this builder
keeps the block design but downsamples 16× by default. Preprocessing ([-1, 1] scaling) is
inside the model like every zoo member; ``input_norm`` (:mod:`zoo.models.normalization`) replaces it by
per-image colour constancy, as for ``custom_cnn`` and ConvNeXt. ``mobilenet_v3_tiny`` is the ≤ 0.5M student variant.
"""

from __future__ import annotations

import keras
from keras import layers

from zoo.models.head import classifier_head
from zoo.models.normalization import apply_input_norm
from zoo.registry import register_model

BN_MOMENTUM = 0.9
# (expansion, out channels, kernel, stride, squeeze-excite, hard-swish) per block.
SMALL_BLOCKS = (
    (1, 16, 3, 1, True, False),
    (4, 24, 3, 2, False, False),
    (3, 24, 3, 1, False, False),
    (4, 40, 5, 2, True, True),
    (6, 40, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (6, 96, 5, 2, True, True),
    (6, 96, 5, 1, True, True),
)


def _hswish(x, name):
    return layers.Activation("hard_swish", name=name)(x)


def _act(x, hswish: bool, name: str):
    return _hswish(x, name) if hswish else layers.ReLU(name=name)(x)


def _bn(x, name):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-3, name=name)(x)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _squeeze_excite(x, channels: int, name: str):
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = layers.Conv2D(_make_divisible(channels / 4), 1, name=f"{name}_reduce")(s)
    s = layers.ReLU(name=f"{name}_relu")(s)
    s = layers.Conv2D(channels, 1, name=f"{name}_expand")(s)
    s = layers.Activation("hard_sigmoid", name=f"{name}_gate")(s)
    return layers.Multiply(name=f"{name}_mul")([x, s])


def _inverted_residual(x, expansion, out, kernel, stride, se, hswish, name):
    inp = x.shape[-1]
    y = x
    if expansion != 1:
        y = layers.Conv2D(_make_divisible(inp * expansion), 1, use_bias=False, name=f"{name}_expand")(y)
        y = _act(_bn(y, f"{name}_expand_bn"), hswish, f"{name}_expand_act")
    y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = _act(_bn(y, f"{name}_dw_bn"), hswish, f"{name}_dw_act")
    if se:
        y = _squeeze_excite(y, y.shape[-1], f"{name}_se")
    y = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(y)
    y = _bn(y, f"{name}_project_bn")
    if stride == 1 and inp == out:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _build(num_classes, image_size, width, blocks, stem_width, head_width, dropout, l1l2, input_norm, name):
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = apply_input_norm(inputs, input_norm, layers.Rescaling(1 / 127.5, offset=-1.0, name="scale"))
    x = layers.Conv2D(
        _make_divisible(stem_width * width), 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = _hswish(_bn(x, "stem_bn"), "stem_act")
    for i, (e, c, k, s, se, hs) in enumerate(blocks):
        x = _inverted_residual(x, e, _make_divisible(c * width), k, s, se, hs, f"b{i}")
    x = layers.Conv2D(_make_divisible(x.shape[-1] * 6), 1, use_bias=False, name="last_conv")(x)
    x = _hswish(_bn(x, "last_bn"), "last_act")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = _hswish(layers.Dense(head_width, name="head_dense")(x), "head_act")
    outputs = classifier_head(x, num_classes, dropout=dropout, l1l2=l1l2)
    return keras.Model(inputs, outputs, name=name)


@register_model(
    family="mobilenet_v3",
    default_image_size=64,
    description="MobileNetV3-Small-style (inverted residuals, SE, hard-swish, 16x downsampling); CPU- and ONNX-friendly.",
)
def mobilenet_v3(
    num_classes: int,
    image_size: int,
    width: float = 1.0,
    stem_width: int = 16,
    head_width: int = 512,
    dropout: float = 0.25,
    l1l2: float = 1e-4,
    input_norm: str = "none",
):
    """``input_norm``: per-image colour normalisation in the graph (:mod:`zoo.models.normalization`)."""
    return _build(
        num_classes, image_size, width, SMALL_BLOCKS, stem_width, head_width, dropout, l1l2, input_norm, "mobilenet_v3"
    )


@register_model(
    family="mobilenet_v3",
    default_image_size=64,
    description="MobileNetV3-style student, about 0.4M parameters (narrower blocks, small head).",
)
def mobilenet_v3_tiny(
    num_classes: int,
    image_size: int,
    width: float = 0.75,
    stem_width: int = 16,
    head_width: int = 128,
    dropout: float = 0.2,
    l1l2: float = 1e-4,
    input_norm: str = "none",
):
    return _build(
        num_classes,
        image_size,
        width,
        SMALL_BLOCKS,
        stem_width,
        head_width,
        dropout,
        l1l2,
        input_norm,
        "mobilenet_v3_tiny",
    )
