"""Ops backed by core ``keras.layers`` preprocessing layers (Keras 3), configured for 0..255 floats.

Behaviour checked against Keras 3.15 source: all these layers take ``value_range=(0, 255)``
where relevant, accept batches and run inside ``tf.data`` graphs; ``MixUp``/``CutMix`` take
``{"images", "labels"}`` with one-hot/soft labels and return labels mixed by the same weights
(convex combinations, so rows still sum to 1). ``RandAugment`` draws *which* ops to apply once
per batch (magnitudes are per image); :func:`randaugment` runs only the drawn ones.
``RandomErasing``'s default fill is clipped Gaussian noise; CutOut here fills with 0.
Layers are built with ``dtype="float32"`` so a global mixed-precision policy cannot turn the
input pipeline into float16.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from zoo.augment.ops import BatchFn, images_only

_F32 = {"dtype": "float32"}


def owning(fn: BatchFn, *layers) -> BatchFn:
    """Record on ``fn`` the layers whose random state it uses (see ``Policy.random_state``)."""
    fn.layers = layers
    return fn


def randaugment(rng: tf.random.Generator, seed: int, num_ops: int, factor: float) -> BatchFn:
    """``keras.layers.RandAugment``'s own sub-layers and op list, dispatched with ``tf.switch_case``.

    The Keras layer picks the ops once per batch (as here) but then *computes all 11* and keeps
    one with ``where`` — 11× the work. Running only the chosen branch gives the same policy
    (same sub-layers, magnitudes and value range) at a fraction of the CPU cost. If a future
    Keras drops the ``_AUGMENT_LAYERS`` list, the layer is called as is.
    """
    layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=factor, seed=seed, **_F32)
    names = list(getattr(layer, "_AUGMENT_LAYERS", []))
    if not names or not all(hasattr(layer, n) for n in names):  # pragma: no cover - other Keras versions
        return owning(images_only(lambda images: layer(images, training=True)), layer)
    subs = [getattr(layer, n) for n in names]

    def run(images):
        shape = images.shape
        for _ in range(num_ops):
            pick = rng.uniform([], 0, len(subs), dtype=tf.int32)
            branches = [
                lambda sub=sub, x=images: tf.ensure_shape(tf.cast(sub(x, training=True), tf.float32), shape)
                for sub in subs
            ]
            images = tf.switch_case(pick, branches)
        return images

    return owning(images_only(run), layer)


def cutout(seed: int, scale: float, p: float) -> BatchFn:
    layer = keras.layers.RandomErasing(
        factor=(p, p), scale=(0.02, scale), fill_value=0.0, value_range=(0, 255), seed=seed, **_F32
    )
    return owning(images_only(lambda images: layer(images, training=True)), layer)


def _mixer(layer) -> BatchFn:
    def run(images, labels):
        out = layer({"images": images, "labels": labels}, training=True)
        return out["images"], tf.cast(out["labels"], tf.float32)

    return owning(run, layer)


def cutmix(seed: int, factor: float) -> BatchFn:
    return _mixer(keras.layers.CutMix(factor=factor, seed=seed, **_F32))


def mixup(seed: int, alpha: float) -> BatchFn:
    return _mixer(keras.layers.MixUp(alpha=alpha, seed=seed, **_F32))
