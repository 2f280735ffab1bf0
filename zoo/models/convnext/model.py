"""ConvNeXt members (Liu et al. 2022, "A ConvNet for the 2020s"), built to export.

Layout of every member (what the rest of the zoo relies on)::

    images (raw RGB 0..255, S x S) ─► backbone ─► head_dropout ─► head_dense ─► probs (softmax, float32)

``backbone`` is one nested ``keras.Model`` that takes the raw pixels too: optional resize,
ImageNet normalisation, the patchify stem, four stages of ConvNeXt blocks with downsampling
between them, global average pooling and the final LayerNorm (the official model's head norm,
which the pretrained weights include). So ``model.get_layer("backbone")(images)`` returns the
same pooled features as ``keras.applications.ConvNeXt*(include_top=False, pooling="avg")``, and
the two-phase transfer learning in ``zoo.train`` can freeze / partly unfreeze it by name (see
:func:`zoo.models.finetune.set_trainable_fraction`). The classifier head is the course project's
(:func:`zoo.models.head.classifier_head`): GAP -> LayerNorm (inside the backbone) -> Dropout(0.35) ->
Dense(L1L2 1e-3) -> softmax.

The registered sizes are data: :data:`VARIANTS` (architecture, default size, stochastic depth,
tunable fields, recipe) generates and registers one builder per row, like timm's ``model_args``.

LayerNorm and partial freezing: LayerNorm keeps no running statistics (it normalises each
position with its own mean/variance in training and inference alike), so freezing a ConvNeXt
layer is simply ``trainable=False``; there is no BatchNorm "inference mode" subtlety.

Blocks use ``DepthwiseConv2D`` (not grouped ``Conv2D``) and an ``erf`` GELU so that tf2onnx
converts them (see :mod:`zoo.models.convnext.layers`). Flat, named layers (as in
``keras.applications``) keep "the last 30% of layers" meaningful for fine-tuning.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np
from keras import layers

from zoo.errors import ZooError
from zoo.models.convnext.layers import DropPath, GeluErf, LayerScale, imagenet_normalization
from zoo.models.head import classifier_head
from zoo.models.normalization import apply_input_norm
from zoo.registry import register_model

log = logging.getLogger(__name__)

LN_EPS = 1e-6  # official ConvNeXt LayerNorm epsilon


@dataclass(frozen=True)
class ConvNeXtConfig:
    """Architecture of one ConvNeXt size; ``imagenet`` names the official Keras weights, if any."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem_stride: int = 4
    kernel_size: int = 7
    imagenet: str | None = None

    def __post_init__(self):
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ZooError(f"ConvNeXt depths {self.depths} and widths {self.widths} must be non-empty and equally long")
        if min(self.depths) < 1 or min(self.widths) < 1 or self.stem_stride < 1 or self.kernel_size < 1:
            raise ZooError(f"invalid ConvNeXt config {self}")

    @property
    def total_stride(self) -> int:
        return self.stem_stride * 2 ** (len(self.depths) - 1)


# Official sizes (paper / keras.applications), plus timm's "atto" widths for a CPU-sized model.
CONFIGS: dict[str, ConvNeXtConfig] = {
    "atto": ConvNeXtConfig((2, 2, 6, 2), (40, 80, 160, 320)),
    "tiny": ConvNeXtConfig((3, 3, 9, 3), (96, 192, 384, 768), imagenet="convnext_tiny"),
    "small": ConvNeXtConfig((3, 3, 27, 3), (96, 192, 384, 768), imagenet="convnext_small"),
    "base": ConvNeXtConfig((3, 3, 27, 3), (128, 256, 512, 1024), imagenet="convnext_base"),
    "large": ConvNeXtConfig((3, 3, 27, 3), (192, 384, 768, 1536), imagenet="convnext_large"),
}

# Two-phase transfer learning, read by zoo.train when the member starts from pretrained weights
# (weights is not None): train the head on a frozen backbone, then unfreeze the last 30% of the
# backbone's weighted layers at a tenth of the learning rate (course project: last 25-40% trainable).
PRETRAINED_RECIPE = {
    "phases": [
        {"name": "head", "trainable_fraction": 0.0, "epochs": 3, "lr_scale": 1.0},
        {"name": "finetune", "trainable_fraction": 0.3, "lr_scale": 0.1},
    ]
}


def _dense_init():
    # Paper: trunc_normal(std=.02) for every conv / linear weight, zero bias.
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _block(x, width: int, kernel_size: int, drop_rate: float, layer_scale_init: float, name: str):
    """Depthwise 7x7 -> LN -> 1x1 (4x) -> GELU -> 1x1 -> LayerScale -> DropPath, plus the input."""
    shortcut = x
    x = layers.DepthwiseConv2D(kernel_size, padding="same", depthwise_initializer=_dense_init(), name=f"{name}_dwconv")(
        x
    )
    x = layers.LayerNormalization(epsilon=LN_EPS, name=f"{name}_norm")(x)
    x = layers.Dense(4 * width, kernel_initializer=_dense_init(), name=f"{name}_pw1")(x)
    x = GeluErf(name=f"{name}_gelu")(x)
    x = layers.Dense(width, kernel_initializer=_dense_init(), name=f"{name}_pw2")(x)
    if layer_scale_init and layer_scale_init > 0:
        x = LayerScale(layer_scale_init, name=f"{name}_scale")(x)
    if drop_rate > 0:
        x = DropPath(drop_rate, name=f"{name}_drop")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def build_backbone(
    cfg: ConvNeXtConfig,
    image_size: int,
    *,
    drop_path_rate: float = 0.0,
    layer_scale_init: float = 1e-6,
    resize_to: int | None = None,
    input_norm: str = "none",
) -> keras.Model:
    """Raw RGB pixels (S x S) -> pooled, LayerNorm-ed features of size ``cfg.widths[-1]``.

    ``input_norm`` other than ``none`` replaces the fixed ImageNet statistics by per-image colour
    normalisation (:mod:`zoo.models.normalization`); its output has the same scale.
    """
    work_size = int(resize_to or image_size)
    if work_size < cfg.total_stride:
        raise ZooError(
            f"ConvNeXt needs inputs of at least {cfg.total_stride} px (stem stride {cfg.stem_stride} and "
            f"{len(cfg.depths) - 1} downsamplings), got {work_size}; use a larger image size or resize_to"
        )
    if not 0.0 <= drop_path_rate < 1.0:
        raise ZooError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")

    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = inputs
    if work_size != image_size:
        x = layers.Resizing(work_size, work_size, interpolation="bilinear", name="resize")(x)
    x = apply_input_norm(x, input_norm, imagenet_normalization(name="imagenet_norm"))

    x = layers.Conv2D(
        cfg.widths[0], cfg.stem_stride, strides=cfg.stem_stride, kernel_initializer=_dense_init(), name="stem_conv"
    )(x)
    x = layers.LayerNormalization(epsilon=LN_EPS, name="stem_norm")(x)

    # Linearly increasing stochastic depth over all blocks (paper / official code).
    rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(cfg.depths))]
    k = 0
    for i, (depth, width) in enumerate(zip(cfg.depths, cfg.widths)):
        if i > 0:
            x = layers.LayerNormalization(epsilon=LN_EPS, name=f"downsample{i - 1}_norm")(x)
            x = layers.Conv2D(width, 2, strides=2, kernel_initializer=_dense_init(), name=f"downsample{i - 1}_conv")(x)
        for j in range(depth):
            x = _block(x, width, cfg.kernel_size, rates[k], layer_scale_init, name=f"stage{i}_block{j}")
            k += 1

    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.LayerNormalization(epsilon=LN_EPS, name="final_norm")(x)
    return keras.Model(inputs, x, name="backbone")


def build_convnext(
    cfg: ConvNeXtConfig,
    num_classes: int,
    image_size: int,
    *,
    name: str,
    weights: str | None = None,
    drop_path_rate: float = 0.0,
    layer_scale_init: float = 1e-6,
    dropout: float = 0.35,
    l1l2: float = 1e-3,
    resize_to: int | None = None,
    input_norm: str = "none",
) -> keras.Model:
    """Backbone + the course project's head; then load ``weights`` (None, "imagenet" or a local file)."""
    if num_classes < 2:
        raise ZooError(f"num_classes must be >= 2, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ZooError(f"dropout must be in [0, 1), got {dropout}")
    backbone = build_backbone(
        cfg,
        image_size,
        drop_path_rate=drop_path_rate,
        layer_scale_init=layer_scale_init,
        resize_to=resize_to,
        input_norm=input_norm,
    )
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = backbone(inputs)
    outputs = classifier_head(
        x,
        num_classes,
        dropout=dropout,
        l1l2=l1l2,
        dropout_name="head_dropout",
        logits_name="head_dense",
        initializer=_dense_init,
    )
    model = keras.Model(inputs, outputs, name=name)

    if isinstance(weights, str) and weights.strip().lower() in ("", "none"):
        weights = None  # the CLI's "--weights none"
    if weights is not None:
        from zoo.models.convnext.weights import load_pretrained

        load_pretrained(model, weights, cfg)
    return model


@dataclass(frozen=True)
class Variant:
    """One registered ConvNeXt member as data (timm's ``model_args`` style): its architecture and
    what the registry shows. ``tunable`` names the :class:`ConvNeXtConfig` fields the builder exposes
    as hyper-parameters (defaults from ``arch``); the rest of the architecture is fixed."""

    arch: ConvNeXtConfig
    default_image_size: int
    drop_path_rate: float  # stochastic-depth default
    description: str
    tunable: tuple[str, ...] = ()
    recipe: dict | None = None


# Stochastic depth defaults of the official sizes: the paper's fine-tuning rates scaled to model size
# (fine-tuning on a small dataset, not ImageNet training from scratch, where T/S/B/L use 0.1/0.4/0.5/0.5).
_OFFICIAL = "official config; weights='imagenet' loads Keras ImageNet-1k weights"
VARIANTS: dict[str, Variant] = {
    # Why a stride-2 stem: at 64 px the official stride-4 patchify leaves a 2x2 map after the last
    # stage; stride 2 keeps 4x4 and twice the resolution in every stage for a small compute cost
    # (the widths are small). depths/widths are tunable for ablations and tests.
    "zepto": Variant(
        ConvNeXtConfig((2, 2, 4, 2), (32, 64, 128, 256), stem_stride=2),
        64,
        0.05,
        "ConvNeXt-zepto: 4 stages (2,2,4,2)x(32..256), stride-2 stem; CPU-sized, for training from scratch at 64 px.",
        tunable=("depths", "widths", "stem_stride", "kernel_size"),
    ),
    "atto": Variant(
        CONFIGS["atto"],
        96,
        0.05,
        "ConvNeXt-atto (timm widths 40..320, depths 2,2,6,2; 3.4M params); from scratch on a CPU.",
        tunable=("stem_stride",),
    ),
    "tiny": Variant(CONFIGS["tiny"], 96, 0.1, f"ConvNeXt-T (28M): {_OFFICIAL}.", recipe=PRETRAINED_RECIPE),
    "small": Variant(CONFIGS["small"], 96, 0.2, f"ConvNeXt-S (50M): {_OFFICIAL}.", recipe=PRETRAINED_RECIPE),
    "base": Variant(CONFIGS["base"], 96, 0.2, f"ConvNeXt-B (89M): {_OFFICIAL}.", recipe=PRETRAINED_RECIPE),
    "large": Variant(
        CONFIGS["large"],
        96,
        0.3,
        f"ConvNeXt-L (198M): {_OFFICIAL} (the course project's best).",
        recipe=PRETRAINED_RECIPE,
    ),
}


def _arch(variant: Variant, tuned: dict[str, Any]) -> ConvNeXtConfig:
    """``variant.arch`` with the tunable fields given to the builder (ints, tuples of ints)."""
    fixed = {
        k: (tuple(int(x) for x in v) if isinstance(getattr(variant.arch, k), tuple) else int(v))
        for k, v in tuned.items()
    }
    return replace(variant.arch, **fixed) if fixed else variant.arch


def _register(size: str, variant: Variant):
    """Register ``convnext_<size>``: a builder whose signature (the registry's hyper-parameters) is
    weights, the variant's tunable architecture fields, then the options every ConvNeXt takes."""
    name = f"convnext_{size}"

    def builder(num_classes: int, image_size: int, weights: str | None = None, **kw: Any) -> keras.Model:
        tuned = {k: kw.pop(k) for k in variant.tunable if k in kw}
        return build_convnext(_arch(variant, tuned), num_classes, image_size, name=name, weights=weights, **kw)

    P = inspect.Parameter
    params = [
        P("num_classes", P.POSITIONAL_OR_KEYWORD, annotation=int),
        P("image_size", P.POSITIONAL_OR_KEYWORD, annotation=int),
        P("weights", P.POSITIONAL_OR_KEYWORD, default=None, annotation=str | None),
    ]
    params += [P(k, P.POSITIONAL_OR_KEYWORD, default=getattr(variant.arch, k)) for k in variant.tunable]
    options = {
        "drop_path_rate": variant.drop_path_rate,
        "layer_scale_init": 1e-6,
        "dropout": 0.35,
        "l1l2": 1e-3,
        "resize_to": None,
        "input_norm": "none",
    }
    params += [P(k, P.POSITIONAL_OR_KEYWORD, default=v) for k, v in options.items()]
    builder.__signature__ = inspect.Signature(params)
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"ConvNeXt-{size} member built from ``VARIANTS[{size!r}]``."
    return register_model(
        family="convnext",
        default_image_size=variant.default_image_size,
        description=variant.description,
        name=name,
        recipe=variant.recipe,
    )(builder)


BUILDERS = {f"convnext_{size}": _register(size, variant) for size, variant in VARIANTS.items()}
