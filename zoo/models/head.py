"""The classifier head every family ends with: Dropout -> Dense (L1L2) -> softmax in float32.

The course project's head (dropout 0.35, L1L2 1e-3 on the last Dense) is written once, here, so
the families cannot drift apart. The softmax is float32 so mixed_float16 training keeps
well-formed probabilities, and the output layer is always named ``probs``.

Two layouts, chosen by ``logits_name`` because saved models, pretrained-weight loading and the
tests rely on layer names: ``None`` fuses the softmax into the Dense named ``probs`` (custom_cnn,
mobilenet_v3); a name keeps a separate Dense of that name (computed in the policy's dtype) and a
float32 ``Activation`` named ``probs`` (ConvNeXt, as in ``keras.applications``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers


def classifier_head(
    x: Any,
    num_classes: int,
    *,
    dropout: float,
    l1l2: float,
    dropout_name: str = "dropout",
    logits_name: str | None = None,
    initializer: Callable[[], Any] | None = None,
) -> Any:
    """Class probabilities from pooled features ``x``.

    ``initializer`` is a factory, called after the Dropout layer is made: Keras draws unseeded
    layer seeds in construction order, so the order here is part of reproducibility.
    """
    x = layers.Dropout(dropout, name=dropout_name)(x)
    reg = keras.regularizers.L1L2(l1=l1l2, l2=l1l2) if l1l2 else None
    init = {"kernel_initializer": initializer()} if initializer is not None else {}
    if logits_name is None:
        return layers.Dense(
            num_classes, activation="softmax", kernel_regularizer=reg, dtype="float32", name="probs", **init
        )(x)
    x = layers.Dense(num_classes, kernel_regularizer=reg, name=logits_name, **init)(x)
    return layers.Activation("softmax", dtype="float32", name="probs")(x)
