"""The only module that imports ``keras_cv`` (imported lazily, only when a spec asks for it).

Keras 3 core has no GridMask, so it comes from keras-cv 0.9 (``keras_cv.layers.GridMask``,
per-image masks via ``tf.map_fn``, fill 0, grid rotated by up to ±0.15 turn). Keeping keras-cv
behind this one import means the rest of the zoo, and exported models, never depend on it.
The grid ratio is drawn from the policy's ``tf.random.Generator`` (keras-cv's default sampler
uses TensorFlow's op-level RNG, whose state cannot be saved), so a resumed run continues the
same augmentation stream.
"""

from __future__ import annotations

import tensorflow as tf

from zoo.augment.ops import BatchFn, images_only
from zoo.errors import ZooError


def gridmask(rng: tf.random.Generator, seed: int, ratio: float) -> BatchFn:
    try:
        import keras_cv
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ZooError(f"augmentation 'gridmask' needs keras-cv (pip install keras-cv): {exc}") from None

    class RatioSampler(keras_cv.core.FactorSampler):
        def __call__(self, shape=(), dtype="float32"):
            return rng.uniform(shape, 0.0, ratio, dtype=dtype)

        def get_config(self):
            return {"upper": ratio}

    layer = keras_cv.layers.GridMask(
        ratio_factor=RatioSampler(),
        rotation_factor=0.15,
        fill_mode="constant",
        fill_value=0,
        seed=seed,
        dtype="float32",
    )
    fn = images_only(lambda images: layer(images, training=True))
    fn.layers = (layer,)
    return fn
