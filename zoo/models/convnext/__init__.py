"""ConvNeXt family: export-friendly ConvNeXt members (zepto, atto, tiny, small, base, large).

Importing registers the members; see :mod:`zoo.models.convnext.model` for the layout and
:mod:`zoo.models.convnext.weights` for ImageNet weights.
"""

from zoo.models.convnext.layers import DropPath, GeluErf, LayerScale
from zoo.models.convnext.model import (
    CONFIGS,
    PRETRAINED_RECIPE,
    VARIANTS,
    ConvNeXtConfig,
    Variant,
    build_backbone,
    build_convnext,
)
from zoo.models.finetune import set_trainable_fraction

__all__ = [
    "CONFIGS",
    "PRETRAINED_RECIPE",
    "VARIANTS",
    "ConvNeXtConfig",
    "DropPath",
    "GeluErf",
    "LayerScale",
    "Variant",
    "build_backbone",
    "build_convnext",
    "set_trainable_fraction",
]
