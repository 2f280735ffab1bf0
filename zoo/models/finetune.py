"""Partial fine-tuning by convention: freeze a member's ``backbone``, unfreeze its last layers.

Every member that supports transfer learning contains one nested layer or model named
``"backbone"``; everything after it (the head) is always trainable. A recipe phase says how
much of the backbone to train with ``trainable_fraction`` (``zoo.train`` reads it from the
member's registered recipe): 0.0 trains the head only, 1.0 everything, 0.3 the last 30%.

"Last 30%" counts the backbone's top-level layers that own weights, in order (the way the
course project's "last 25-40% of layers trainable" counted ``keras.applications`` layers); weightless
layers (activations, adds, drop-path) follow the layer before them, so a frozen block is
frozen as a whole and its drop-path is off (see ``DropPath``).

Normalisation layers: LayerNorm (ConvNeXt) has no running statistics, so freezing it is just
``trainable=False``. BatchNorm is different: in Keras 3 a BatchNorm with ``trainable=False``
runs in inference mode (uses and keeps its moving statistics). ``freeze_batchnorm=True``
(default, the Keras transfer-learning guide's advice) keeps every BatchNorm of the backbone
frozen even inside the unfrozen part, so a small fine-tuning set does not overwrite the
statistics the pretrained weights rely on.

Call it before ``model.compile`` (Keras collects trainable weights at compile time); changing
the fraction between phases means compiling again.
"""

from __future__ import annotations

import math

import keras

from zoo.errors import ZooError

BACKBONE = "backbone"


def get_backbone(model: keras.Model) -> keras.layers.Layer:
    """The member's nested ``backbone`` layer, or a ZooError saying the member has none."""
    try:
        return model.get_layer(BACKBONE)
    except ValueError:
        raise ZooError(
            f"model '{model.name}' has no layer named '{BACKBONE}', so it cannot be partly fine-tuned"
        ) from None


def _sublayers(backbone: keras.layers.Layer) -> list[keras.layers.Layer]:
    layers = list(getattr(backbone, "layers", []) or [])
    return layers or [backbone]  # a single-layer "backbone" is all or nothing


def set_trainable_fraction(model: keras.Model, fraction: float, *, freeze_batchnorm: bool = True) -> int:
    """Freeze the backbone, then unfreeze its last ``fraction`` of weighted layers.

    Returns the number of weighted backbone layers left trainable. The head (layers outside
    the backbone) is made trainable. ``ceil`` rounding: any fraction > 0 unfreezes at least one.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ZooError(f"trainable_fraction must be in [0, 1], got {fraction}")
    backbone = get_backbone(model)
    model.trainable = True  # head trainable; also re-enables every sublayer before we choose
    sub = _sublayers(backbone)
    weighted = [i for i, layer in enumerate(sub) if layer.weights]
    n_train = math.ceil(fraction * len(weighted) - 1e-9)
    start = weighted[len(weighted) - n_train] if n_train else len(sub)
    if sub == [backbone]:
        backbone.trainable = n_train > 0
    else:
        for i, layer in enumerate(sub):
            layer.trainable = i >= start
    if freeze_batchnorm:
        for layer in sub:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return n_train


def trainable_summary(model: keras.Model) -> dict[str, int]:
    """Counts of trainable / frozen parameters (for logs and cards)."""
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(math.prod(w.shape)) for w in model.non_trainable_weights)
    return {"trainable_params": trainable, "non_trainable_params": frozen}
