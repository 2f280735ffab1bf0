"""Ops backed by core ``keras.layers`` preprocessing layers (Keras 3), configured for 0..255 floats.

Behaviour checked against Keras 3.15 source: all these layers take ``value_range=(0, 255)``
where relevant, accept batches and run inside ``tf.data`` graphs; ``MixUp``/``CutMix`` take
``{"images", "labels"}`` with one-hot/soft labels and return labels mixed by the same weights
(convex combinations, so rows still sum to 1). ``RandAugment`` draws *which* ops to apply once
per batch (magnitudes are per image) — the per-image probability wrapper adds diversity.
``RandomErasing``'s default fill is clipped Gaussian noise; CutOut here fills with 0.
Layers are built with ``dtype="float32"`` so a global mixed-precision policy cannot turn the
input pipeline into float16.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from zoo.augment.ops import BatchFn, gamma, images_only

_F32 = {"dtype": "float32"}


def randaugment(seed: int, num_ops: int, factor: float) -> BatchFn:
    layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=factor, seed=seed, **_F32)
    return images_only(lambda images: layer(images, training=True))


def color(rng: tf.random.Generator, seed: int, strength: float) -> BatchFn:
    """Brightness ±0.2s (of 255), contrast 1±0.4s, saturation ×[~0.5, ~2] at s=1, hue ±0.05 turn, gamma e^±0.4s."""
    s = strength
    jitter = keras.layers.RandomColorJitter(
        value_range=(0, 255),
        brightness_factor=0.2 * s,
        contrast_factor=0.4 * s,
        saturation_factor=(0.5 - 0.17 * s, 0.5 + 0.17 * s),
        hue_factor=0.1 * s,
        seed=seed,
        **_F32,
    )
    apply_gamma = gamma(rng, 0.4 * s)

    def run(images):
        return apply_gamma(tf.clip_by_value(jitter(images, training=True), 0.0, 255.0))

    return images_only(run)


def cutout(seed: int, scale: float, p: float) -> BatchFn:
    layer = keras.layers.RandomErasing(factor=(p, p), scale=(0.02, scale), fill_value=0.0, value_range=(0, 255), seed=seed, **_F32)
    return images_only(lambda images: layer(images, training=True))


def _mixer(layer) -> BatchFn:
    def run(images, labels):
        out = layer({"images": images, "labels": labels}, training=True)
        return out["images"], tf.cast(out["labels"], tf.float32)

    return run


def cutmix(seed: int, factor: float) -> BatchFn:
    return _mixer(keras.layers.CutMix(factor=factor, seed=seed, **_F32))


def mixup(seed: int, alpha: float) -> BatchFn:
    return _mixer(keras.layers.MixUp(alpha=alpha, seed=seed, **_F32))
