"""Small ConvNeXt layers written so that a trained model exports cleanly to ONNX.

Why not reuse ``keras.applications.convnext``: its block uses a grouped ``Conv2D``
(``groups=channels``), which Keras 3 on TensorFlow compiles through XLA, and tf2onnx 1.17 then
leaves ``StatefulPartitionedCall`` nodes that ONNX Runtime rejects; its exact GELU lowers to
``Erfc``, which tf2onnx cannot convert. The blocks here use ``DepthwiseConv2D`` and the layers
below, which lower to plain ``Erf``/``Mul``/``Add`` ops, so the same network exports and keeps
the official ImageNet weights (see :mod:`zoo.models.convnext.weights` for the mapping).

Every layer is registered under the ``zoo`` package so ``keras.saving.load_model(path,
safe_mode=True)`` rebuilds a saved member after ``import zoo.models``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@keras.saving.register_keras_serializable(package="zoo")
class GeluErf(keras.layers.Layer):
    """Exact GELU, ``0.5 * x * (1 + erf(x / sqrt(2)))``.

    Numerically the same function as ``keras.activations.gelu(approximate=False)`` (which the
    official weights were trained with), but written with ``erf`` so TF emits ``Erf`` (ONNX has
    it) instead of ``Erfc`` (tf2onnx does not).
    """

    def call(self, x):
        return 0.5 * x * (1.0 + ops.erf(x * _INV_SQRT2))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="zoo")
class LayerScale(keras.layers.Layer):
    """Per-channel learnable scale of a residual branch (CaiT; used by ConvNeXt).

    Initialised tiny (``1e-6`` in the paper) so every block starts close to the identity, which
    is what lets deep ConvNeXts train stably.
    """

    def __init__(self, init_value: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(int(input_shape[-1]),),
            initializer=keras.initializers.Constant(self.init_value),
            trainable=True,
        )

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="zoo")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drop a sample's whole residual branch with probability ``rate``.

    Per-sample (as in the paper and timm), not per-batch as ``keras.applications`` does, and
    rescaled by ``1/(1-rate)`` so the expectation is unchanged. Identity at inference, and also
    while the layer is frozen (``trainable=False``): a frozen block is a fixed feature
    extractor during partial fine-tuning, the same way a frozen BatchNorm runs in inference
    mode in Keras 3.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None

    def call(self, x, training=None):
        if not training or self.rate == 0.0 or not self.trainable:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x / ops.cast(keep, x.dtype) * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


# ImageNet statistics on the 0..255 scale, as the official Keras ConvNeXt "PreStem" uses them.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def imagenet_normalization(name: str = "imagenet_norm") -> keras.layers.Layer:
    """Raw RGB 0..255 -> ImageNet-standardised input (the preprocessing the weights expect).

    A built-in ``Normalization`` with fixed statistics: it has no weights (nothing to train or
    load) and exports as a subtract and a divide.
    """
    return keras.layers.Normalization(mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD], name=name)
