"""Augmentation ops written directly in TensorFlow (where no core Keras layer fits).

Every op maps a batch ``(images float32 (B, H, W, 3) 0..255, labels (B, C))`` to the same
shapes and draws its randomness per image from the policy's ``tf.random.Generator``, so it
traces once inside ``tf.data.Dataset.map`` and differs image by image. Ops written here:
symmetries (per-image, unlike ``tf.image.rot90`` which rotates a whole batch alike), HED stain
jitter, gamma, blur with a per-image sigma larger than ``keras.layers.RandomGaussianBlur``
allows (its sigma is capped at 1 and shared by the batch), noise, JPEG, and the centre mask.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from zoo.augment.stain import BETA_SCALE, HED_FROM_RGB, RGB_FROM_HED

BatchFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _select(mask: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per-image choice: ``a[i]`` where ``mask[i]`` else ``b[i]``."""
    return tf.where(tf.reshape(mask, [-1] + [1] * (a.shape.rank - 1)), a, b)


def _batch(images: tf.Tensor) -> tf.Tensor:
    return tf.shape(images)[0]


def with_probability(fn: BatchFn, p: float, rng: tf.random.Generator) -> BatchFn:
    """Apply ``fn`` to each image (and its label) with probability ``p``; others pass through."""
    if p >= 1.0:
        return fn
    if p <= 0.0:
        return lambda images, labels: (images, labels)

    def run(images, labels):
        new_images, new_labels = fn(images, labels)
        take = rng.uniform([_batch(images)]) < p
        return _select(take, new_images, images), _select(take, new_labels, labels)

    return run


def images_only(fn: Callable[[tf.Tensor], tf.Tensor]) -> BatchFn:
    return lambda images, labels: (fn(images), labels)


# ----------------------------------------------------------------------------- geometry
def flip_rot90(rng: tf.random.Generator) -> BatchFn:
    """Random element of the dihedral group D4 per image: flips and, on square images, a transpose.

    lr-flip × ud-flip × transpose generate all 8 symmetries (the four 90° rotations and their
    mirror images) and move pixels without changing any value.
    """

    def run(images):
        u = rng.uniform([3, _batch(images)])
        images = _select(u[0] < 0.5, tf.reverse(images, [2]), images)
        images = _select(u[1] < 0.5, tf.reverse(images, [1]), images)
        h, w = images.shape[1], images.shape[2]
        transpose = lambda: _select(u[2] < 0.5, tf.transpose(images, [0, 2, 1, 3]), images)  # noqa: E731
        if h is not None and w is not None:
            return transpose() if h == w else images
        shape = tf.shape(images)
        return tf.cond(tf.equal(shape[1], shape[2]), transpose, lambda: images)

    return images_only(run)


# ----------------------------------------------------------------------------- colour
def stain(rng: tf.random.Generator, sigma: float) -> BatchFn:
    """HED stain perturbation: per image and stain channel, ``hed * U(1±σ) + U(±σ)·BETA_SCALE``."""
    hed_from_rgb = tf.constant(HED_FROM_RGB, tf.float32)
    rgb_from_hed = tf.constant(RGB_FROM_HED, tf.float32)

    def run(images):
        b = _batch(images)
        od = -tf.math.log((images + 1.0) / 256.0)
        hed = tf.einsum("bhwc,cd->bhwd", od, hed_from_rgb)
        alpha = rng.uniform([b, 1, 1, 3], 1.0 - sigma, 1.0 + sigma)
        beta = rng.uniform([b, 1, 1, 3], -sigma, sigma) * BETA_SCALE
        od = tf.einsum("bhwc,cd->bhwd", hed * alpha + beta, rgb_from_hed)
        return tf.clip_by_value(256.0 * tf.exp(-od) - 1.0, 0.0, 255.0)

    return images_only(run)


def gamma(rng: tf.random.Generator, log_range: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """``255·(x/255)^g`` with ``log g ~ U(±log_range)`` per image (illumination/camera response)."""

    def run(images):
        g = tf.exp(rng.uniform([_batch(images), 1, 1, 1], -log_range, log_range))
        return 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), g)

    return run


# ----------------------------------------------------------------------------- degradation
def _gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _separable_blur(images: tf.Tensor, kernel: np.ndarray) -> tf.Tensor:
    r = len(kernel) // 2
    kv = tf.constant(np.tile(kernel[:, None, None, None], (1, 1, 3, 1)))
    kh = tf.constant(np.tile(kernel[None, :, None, None], (1, 1, 3, 1)))
    x = tf.pad(images, [[0, 0], [r, r], [0, 0], [0, 0]], mode="SYMMETRIC")
    x = tf.nn.depthwise_conv2d(x, kv, [1, 1, 1, 1], "VALID")
    x = tf.pad(x, [[0, 0], [0, 0], [r, r], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(x, kh, [1, 1, 1, 1], "VALID")


def blur(rng: tf.random.Generator, sigma_max: float, levels: int = 4) -> BatchFn:
    """Gaussian blur with per-image sigma ~ U(σ/4, σ): a bank of ``levels`` blurs, interpolated.

    Blending the two bank levels around each image's sigma approximates a continuous sigma
    with a fixed number of convolutions per batch.
    """
    if sigma_max <= 0:
        return lambda images, labels: (images, labels)
    sigmas = [sigma_max * (i + 1) / levels for i in range(levels)]

    def run(images):
        radius = int(np.ceil(3 * sigma_max))
        h, w = images.shape[1], images.shape[2]
        if h is not None and w is not None:
            radius = min(radius, h, w)  # SYMMETRIC padding needs pad <= size
        bank = tf.stack([_separable_blur(images, _gaussian_kernel(s, radius)) for s in sigmas], axis=1)
        pos = rng.uniform([_batch(images)], 0.0, float(levels - 1))  # sigma/σmax*levels - 1 ∈ [0, levels-1]
        lo = tf.minimum(tf.cast(tf.floor(pos), tf.int32), levels - 2)
        frac = pos - tf.cast(lo, tf.float32)
        weights = tf.one_hot(lo, levels) * (1.0 - frac)[:, None] + tf.one_hot(lo + 1, levels) * frac[:, None]
        return tf.einsum("bl,blhwc->bhwc", weights, bank)

    return images_only(run)


def noise(rng: tf.random.Generator, std_max: float) -> BatchFn:
    def run(images):
        std = rng.uniform([_batch(images), 1, 1, 1], 0.0, std_max)
        return tf.clip_by_value(images + rng.normal(tf.shape(images)) * std, 0.0, 255.0)

    return images_only(run)


def jpeg(rng: tf.random.Generator, quality_min: int) -> BatchFn:
    """Re-encode each image as JPEG at quality ~ U[quality_min, 95] (``tf.image`` works per image)."""

    def one(args):
        image, quality = args
        return tf.image.adjust_jpeg_quality(image / 255.0, quality) * 255.0

    def run(images):
        q = rng.uniform([_batch(images)], quality_min, 96, dtype=tf.int32)
        out = tf.map_fn(one, (tf.clip_by_value(images, 0.0, 255.0), q), fn_output_signature=tf.float32)
        return tf.ensure_shape(out, images.shape)

    return images_only(run)


# ----------------------------------------------------------------------------- occlusion
def center_mask(rng: tf.random.Generator, radius: float) -> BatchFn:
    """Replace pixels outside a centred disc by the background colour of the image's border.

    PBC crops centre the cell of interest; neighbouring cells and red cells near the border are
    context the classifier should not lean on. The fill is the 75th percentile (per channel) of
    the 2-pixel frame — the bright smear background rather than the red cells cut by the
    border — so the mask hides context without drawing an unnatural dark ring.
    """
    lo, hi = sorted((radius, 1.0))

    def run(images):
        shape = tf.shape(images)
        h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        yy = tf.range(h) + 0.5 - h / 2.0
        xx = tf.range(w) + 0.5 - w / 2.0
        dist = tf.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2) / (tf.minimum(h, w) / 2.0)
        frame = tf.concat(
            [
                tf.reshape(images[:, :2], [shape[0], -1, 3]),
                tf.reshape(images[:, -2:], [shape[0], -1, 3]),
                tf.reshape(images[:, :, :2], [shape[0], -1, 3]),
                tf.reshape(images[:, :, -2:], [shape[0], -1, 3]),
            ],
            axis=1,
        )
        ordered = tf.sort(frame, axis=1)
        k = tf.cast(tf.cast(tf.shape(ordered)[1] - 1, tf.float32) * 0.75, tf.int32)
        fill = ordered[:, k][:, None, None, :]
        r = rng.uniform([shape[0], 1, 1, 1], lo, hi) if hi > lo else tf.fill([shape[0], 1, 1, 1], lo)
        outside = dist[None, :, :, None] > r
        return tf.where(outside, fill, images)

    return images_only(run)
