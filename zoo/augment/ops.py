"""Augmentation ops written directly in TensorFlow (where no core Keras layer fits, or where
the Keras layer costs several times the CPU for the same effect).

Every op maps a batch ``(images float32 (B, H, W, 3) 0..255, labels (B, C))`` to the same
shapes and draws its randomness per image from the policy's ``tf.random.Generator``, so it
traces once inside ``tf.data.Dataset.map`` and differs image by image. Ops written here:
symmetries (per image, unlike ``tf.image.rot90`` which rotates a whole batch alike), HED stain
jitter, colour jitter (one 3×3 colour matrix per image instead of Keras's HSV round trips),
blur with a per-image sigma larger than ``keras.layers.RandomGaussianBlur`` allows (its sigma
is capped at 1 and shared by the batch), noise, JPEG, and the centre mask. On a CPU-only box
the input pipeline shares cores with training, so each op does work only for the images it
changes (per-image groups, subsets for probabilities).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from zoo.augment.stain import BETA_SCALE, HED_FROM_RGB, RGB_FROM_HED

BatchFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _batch(images: tf.Tensor) -> tf.Tensor:
    return tf.shape(images)[0]


def with_probability(fn: BatchFn, p: float, rng: tf.random.Generator) -> BatchFn:
    """Apply ``fn`` to each image (and its label) with probability ``p``; others pass through.

    Only the chosen images are gathered and transformed (then scattered back), so an op at
    ``p=0.3`` costs about 30% of the full batch — this matters on CPU-only machines, where the
    input pipeline shares cores with training. Label mixers then pair images within the chosen
    subset.
    """
    if p >= 1.0:
        return fn
    if p <= 0.0:
        return lambda images, labels: (images, labels)

    def run(images, labels):
        take = rng.uniform([_batch(images)]) < p
        idx = tf.where(take)

        def apply():
            new_images, new_labels = fn(tf.gather_nd(images, idx), tf.gather_nd(labels, idx))
            return (
                tf.tensor_scatter_nd_update(images, idx, tf.cast(new_images, images.dtype)),
                tf.tensor_scatter_nd_update(labels, idx, tf.cast(new_labels, labels.dtype)),
            )

        return tf.cond(tf.shape(idx)[0] > 0, apply, lambda: (images, labels))

    return run


def images_only(fn: Callable[[tf.Tensor], tf.Tensor]) -> BatchFn:
    return lambda images, labels: (fn(images), labels)


def _per_group(images: tf.Tensor, groups: tf.Tensor, transforms: list[Callable[[tf.Tensor], tf.Tensor]]) -> tf.Tensor:
    """Apply ``transforms[g]`` to the images whose group is ``g`` — each image is processed once.

    ``dynamic_partition``/``dynamic_stitch`` instead of computing every variant for the whole
    batch and selecting (several times the CPU work).
    """
    n = len(transforms)
    parts = tf.dynamic_partition(images, groups, n)
    positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), groups, n)
    # empty groups skip their transform (some kernels mis-shape empty batches, e.g. padded convs)
    done = [
        tf.cond(tf.shape(part)[0] > 0, lambda t=t, part=part: t(part), lambda part=part: part)
        for t, part in zip(transforms, parts)
    ]
    return tf.dynamic_stitch(positions, done)


# ----------------------------------------------------------------------------- geometry
_FLIPS = [lambda x: x, lambda x: tf.reverse(x, [2]), lambda x: tf.reverse(x, [1]), lambda x: tf.reverse(x, [1, 2])]
_D4 = _FLIPS + [lambda x, f=f: tf.transpose(f(x), [0, 2, 1, 3]) for f in _FLIPS]


def flip_rot90(rng: tf.random.Generator) -> BatchFn:
    """A uniformly random element of the dihedral group D4 per image (square images).

    The four flip combinations and their transposes are the 8 symmetries of a square — the
    four 90° rotations and their mirror images — so pixels move but no value changes.
    Non-square images get the four flip combinations only (a transpose would change shape).
    """

    def run(images):
        h, w = images.shape[1], images.shape[2]
        square = h is not None and w is not None and h == w
        table = _D4 if square else _FLIPS
        groups = rng.uniform([_batch(images)], 0, len(table), dtype=tf.int32)
        out = _per_group(images, groups, table)
        return tf.ensure_shape(out, images.shape)

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


def color_jitter(rng: tf.random.Generator, strength: float) -> BatchFn:
    """Brightness, contrast, saturation, hue and gamma jitter as one per-image colour transform.

    Saturation (blend with luminance) and hue (rotation of the chroma plane in YIQ space) are
    3×3 linear maps, composed into a single matrix per image; contrast and brightness are an
    affine step around the image's mean luminance; gamma follows. At ``strength`` s: brightness
    ±0.2·s·255, contrast ×[1−0.4s, 1+0.4s], saturation ×e^±0.7s, hue ±0.05·s turn, gamma e^±0.4s.
    This replaces ``keras.layers.RandomColorJitter``, whose two RGB↔HSV round trips made it the
    slowest op of the ``shift`` preset on CPU (about 5× slower for the same jitter).
    """
    s = float(strength)
    lum = tf.constant([0.299, 0.587, 0.114], tf.float32)
    yiq = tf.constant([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], tf.float32)
    yiq_inv = tf.linalg.inv(yiq)

    def run(images):
        b = _batch(images)
        sat = tf.exp(rng.uniform([b], -0.7 * s, 0.7 * s))
        theta = rng.uniform([b], -0.05 * s, 0.05 * s) * 2.0 * np.pi
        contrast = rng.uniform([b], 1.0 - 0.4 * s, 1.0 + 0.4 * s)
        bright = rng.uniform([b], -0.2 * s, 0.2 * s) * 255.0
        log_gamma = rng.uniform([b], -0.4 * s, 0.4 * s)
        eye = tf.eye(3, batch_shape=[b])
        m_sat = sat[:, None, None] * eye + (1.0 - sat)[:, None, None] * tf.ones([b, 3, 1]) * lum[None, None, :]
        c, sn = tf.cos(theta), tf.sin(theta)
        zero, one = tf.zeros_like(c), tf.ones_like(c)
        rot = tf.stack([tf.stack([one, zero, zero], -1), tf.stack([zero, c, -sn], -1), tf.stack([zero, sn, c], -1)], 1)
        m_hue = tf.einsum("ij,bjk,kl->bil", yiq_inv, rot, yiq)
        m = tf.matmul(m_hue, m_sat)  # (B, 3, 3): x' = M x
        x = tf.einsum("bhwc,bdc->bhwd", images, m)
        mean = tf.reduce_mean(tf.tensordot(images, lum, 1), axis=[1, 2])[:, None, None, None]
        x = (x - mean) * contrast[:, None, None, None] + mean + bright[:, None, None, None]
        x = tf.clip_by_value(x / 255.0, 0.0, 1.0)
        return 255.0 * tf.pow(x, tf.exp(log_gamma)[:, None, None, None])

    return images_only(run)


def _photometric_ops(strength: float, rng: tf.random.Generator) -> list[Callable[[tf.Tensor], tf.Tensor]]:
    """Per-image photometric primitives for AugMix chains (0..255 in and out, unclipped until the end).

    Lamp brightness (a common gain), white balance (a gain per channel), contrast, gamma, HED
    stain concentration and saturation: the acquisition changes two labs differ by. Geometry and
    blur are left out on purpose (AugMix's rule: keep the chain ops apart from what you test on).
    """
    s = float(strength)
    hed_from_rgb = tf.constant(HED_FROM_RGB, tf.float32)
    rgb_from_hed = tf.constant(RGB_FROM_HED, tf.float32)
    lum = tf.constant([0.299, 0.587, 0.114], tf.float32)

    def u(x, shape, lo, hi):
        return rng.uniform(tf.concat([[_batch(x)], shape], 0), lo, hi)

    def gain(x):
        return x * tf.exp(u(x, [1, 1, 1], -0.5 * s, 0.5 * s))

    def white_balance(x):
        return x * tf.exp(u(x, [1, 1, 3], -0.3 * s, 0.3 * s))

    def contrast(x):
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        return (x - mean) * tf.exp(u(x, [1, 1, 1], -0.5 * s, 0.5 * s)) + mean

    def gamma(x):
        return 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 0.0, 1.0), tf.exp(u(x, [1, 1, 1], -0.5 * s, 0.5 * s)))

    def stain_scale(x):
        od = -tf.math.log((tf.clip_by_value(x, 0.0, 255.0) + 1.0) / 256.0)
        hed = tf.einsum("bhwc,cd->bhwd", od, hed_from_rgb) * u(x, [1, 1, 3], 1.0 - 0.6 * s, 1.0 + 0.6 * s)
        return 256.0 * tf.exp(-tf.einsum("bhwc,cd->bhwd", hed, rgb_from_hed)) - 1.0

    def saturation(x):
        grey = tf.tensordot(x, lum, 1)[..., None]
        return grey + (x - grey) * tf.exp(u(x, [1, 1, 1], -0.8 * s, 0.8 * s))

    return [gain, white_balance, contrast, gamma, stain_scale, saturation]


def augmix(rng: tf.random.Generator, strength: float, width: int = 3, depth: int = 2) -> BatchFn:
    """AugMix-style mixing (Hendrycks et al. 2020) with photometric chains, labels untouched.

    Per image: ``width`` chains, each applying ``depth`` primitives chosen at random (one draw per
    image and step); the chains are mixed with Dirichlet(1, …, 1) weights and the mixture blended
    with the original by ``m ~ U(0, 1)`` (AugMix's Beta(1, 1)). Mixing keeps the images close to
    the data manifold while their colour statistics spread widely. Without AugMix's
    Jensen-Shannon consistency loss (the zoo trains with plain cross-entropy).
    """
    prims = _photometric_ops(strength, rng)

    def run(images):
        b = _batch(images)
        x = tf.clip_by_value(images, 0.0, 255.0)
        weights = -tf.math.log(rng.uniform([width, b, 1, 1, 1], 1e-6, 1.0))  # Exp(1) -> Dirichlet(1)
        weights = weights / tf.reduce_sum(weights, axis=0, keepdims=True)
        mixed = tf.zeros_like(x)
        for k in range(width):
            chain = x
            for _ in range(depth):
                groups = rng.uniform([b], 0, len(prims), dtype=tf.int32)
                chain = tf.clip_by_value(_per_group(chain, groups, prims), 0.0, 255.0)
            mixed += weights[k] * tf.ensure_shape(chain, images.shape)
        m = rng.uniform([b, 1, 1, 1], 0.0, 1.0)
        return m * x + (1.0 - m) * mixed

    return images_only(run)


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


BLUR_REFERENCE_SIZE = 128


def blur(rng: tf.random.Generator, sigma_max: float, levels: int = 6) -> BatchFn:
    """Gaussian blur with a per-image sigma from ``levels`` values evenly spaced in [σ/4, σ].

    σ is in pixels of a 128-px image and scales with the actual size, so one spec means the same
    optical blur whether a member trains at 64 or 224 px (as in ``shifted_copy``).
    """
    if sigma_max <= 0:
        return lambda images, labels: (images, labels)

    def run(images):
        h, w = images.shape[1], images.shape[2]
        scale = min(h, w) / BLUR_REFERENCE_SIZE if h is not None and w is not None else 1.0
        sigmas = np.linspace(sigma_max / 4, sigma_max, levels) * scale
        radius = max(1, int(np.ceil(3 * sigmas[-1])))
        if h is not None and w is not None:
            radius = min(radius, h, w)  # SYMMETRIC padding needs pad <= size
        kernels = [_gaussian_kernel(s, radius) for s in sigmas]
        groups = rng.uniform([_batch(images)], 0, levels, dtype=tf.int32)
        out = _per_group(images, groups, [lambda x, k=k: _separable_blur(x, k) for k in kernels])
        return tf.ensure_shape(out, images.shape)

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
        outside = tf.cast(dist[None, :, :, None] > r, images.dtype)
        return images * (1.0 - outside) + fill * outside  # exact for 0/1 masks, faster than a broadcast where

    return images_only(run)
