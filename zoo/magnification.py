"""Test-time magnification adaptation: measure how much larger a set of images shows the cells than
the training images did, and resample the set back before the model sees it. No labels, no training.

Why: cell size is a class cue (platelets are small, monocytes large), and every model in the zoo
loses 12-16 points when the magnification changes by 8-45% (``zoo.shift`` geometry), the one family
no recipe trains on. But one lab images its slides through one objective onto one camera: the
magnification is a property of the *set*, so it can be measured on the set and undone, as
BatchNorm adaptation (:mod:`zoo.adapt`) undoes a set's activation shift. On ``pbc-cpu``'s robust vote
it takes the geometry family from 85.9% to 95.1% at unchanged clean accuracy
(``benchmarks/results/magnification_pbc_cpu.md``).

The ruler: the spatial autocorrelation of an image's optical density falls with the lag at a rate
set by the size of what fills the field (red cells, the nucleus). Magnify the image ×z and the curve
stretches ×z along the lag axis, so the lag at which it falls to a quarter of its lag-1 value is a
length proportional to the magnification. The ruler reads the *chromatic* part of optical density
(each pixel's OD less its mean over the three channels, then the image's mean removed): a grey
change of intensity (brightness, vignetting, any illumination falloff) adds the same OD to all three
channels and vanishes exactly, and per-channel colour gains are constant offsets that the mean
removes. (The grey OD ruler this replaced misread vignetting as ×1.21 magnification.) Normalising at
lag 1 makes it blind to pixel noise; the quarter point sits far enough from lag 0 that blur moves it
little (defocus at the suite's strongest, ×1.03).

The ruler also reads the cell in the middle: a platelet field reads about half a monocyte field. So
each image is compared with the training images *of its class*, the class the model predicts for it,
and the set's magnification is the median of those ratios (robust to the images the model gets
wrong). A set of one class then reads as one of the training mix does (within ±3% on PBC val).

One reading is not the answer: cropping (zoom in) and mirrored borders (zoom out) bend the curve
toward ×1, and the classes predicted on a magnified set lean toward the classes of that size (a
shrunken set looks like small cells), so a large change reads short (×1.41 as about ×1.2). The
adapter therefore iterates: resample the set by the magnification read so far, predict its classes
again, read the *resampled* set, multiply, and stop when a reading is within 1% of ×1 (at most
``MAX_STEPS`` readings). The answer is the fixed point, the magnification at which the resampled set
reads as the training images; on PBC it lands within 1% of the suite's nominal ×0.71 and ×1.41.

The ``tolerance`` is the ruler's noise floor: a set whose *first* reading is within ±8% of the
training scale is left as it is, since a model loses little there and blur alone moves the reading
by a few percent; iterating only starts beyond it, so a small misreading is never amplified.
Per set, not per image: one lab's set of a few dozen images or more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from zoo.content_cache import ContentCache
from zoo.errors import ZooError
from zoo.shift.corruptions import magnify

RULER = "chromatic-od-acf-2"  # names the ruler; rulers recorded by another cannot be compared with it
FRACTION = 0.25  # the ruler: lag at which the autocorrelation falls to this share of its lag-1 value
TOLERANCE = 0.08  # a first reading within this of ×1 is left alone (the ruler's noise floor, see module docstring)
CONVERGED = 0.01  # the iteration stops when the resampled set reads within this of ×1
MAX_STEPS = 4  # readings per set at most (each one a prediction pass)
MIN_IMAGES = 16  # a set: fewer images are not measured
MIN_PER_CLASS = 5  # training images a class needs for its reference ruler
CHUNK = 64
# Rulers per image set: in one run the shift suite shows the same sets to every model at a size
# (zoo.content_cache), and the training images that make the class rulers are the same for each.
RULERS = ContentCache(max_entries=4096)


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ZooError(f"magnification adaptation needs square RGB images (N, S, S, 3), got {images.shape}")
    return images


def _linear_acf(x: np.ndarray) -> np.ndarray:
    """Linear (zero-padded) autocorrelation of (N, S, S) arrays at lags -(S-1)..S-1 on both axes."""
    s = x.shape[1]
    f = np.fft.rfft2(x, s=(2 * s, 2 * s))
    r = np.fft.irfft2(f.real**2 + f.imag**2, s=(2 * s, 2 * s))
    return np.fft.fftshift(r, axes=(1, 2))[:, 1:, 1:]


def image_rulers(images: np.ndarray, fraction: float = FRACTION) -> np.ndarray:
    """Each image's characteristic length in pixels (NaN where its autocorrelation never falls that far)."""
    images = _check(images)
    return RULERS.get_or_compute(
        RULERS.key("image_rulers", RULER, float(fraction), images), lambda: _image_rulers(images, fraction)
    )


def _image_rulers(images: np.ndarray, fraction: float) -> np.ndarray:
    s = images.shape[1]
    lags = np.arange(-s + 1, s)
    radius = np.rint(np.hypot(lags[:, None], lags[None, :])).astype(np.int64).ravel()
    keep = s // 2 + 1
    counts = np.bincount(radius, minlength=keep)[:keep]
    overlap = np.maximum(_linear_acf(np.ones((1, s, s), np.float64))[0], 1.0)  # pixels behind each lag
    out = np.full(len(images), np.nan)
    for start in range(0, len(images), CHUNK):
        od = -np.log((images[start : start + CHUNK].astype(np.float64) + 1.0) / 256.0)
        od -= od.mean(axis=-1, keepdims=True)  # chromatic part only: grey intensity changes vanish
        od -= od.mean(axis=(1, 2), keepdims=True)
        acf = sum(_linear_acf(od[..., ch]) for ch in range(3)) / overlap
        for k, a in enumerate(acf):
            curve = np.bincount(radius, a.ravel(), minlength=keep)[:keep] / counts
            if not curve[1] > 0:
                continue  # a flat image
            curve = curve / curve[1]
            below = np.flatnonzero(curve[1:] < fraction)
            if len(below):
                i = int(below[0]) + 1  # first lag below; interpolate between it and the one before
                out[start + k] = i - 1 + (curve[i - 1] - fraction) / (curve[i - 1] - curve[i])
    return out


def rescale(images: np.ndarray, factor: float) -> np.ndarray:
    """``images`` magnified ×``factor`` about the centre (mirrored border when shrinking), uint8."""
    x = np.asarray(images)
    if factor == 1.0:
        return x.copy()
    out = np.empty(x.shape, dtype=np.uint8)
    for start in range(0, len(x), CHUNK):
        chunk = x[start : start + CHUNK].astype(np.float32)
        out[start : start + CHUNK] = np.clip(
            np.rint(magnify(chunk, np.full(len(chunk), factor, np.float32))), 0, 255
        ).astype(np.uint8)
    return out


class Adapted(NamedTuple):
    """What the adapter made of a set: the images to score, the magnification it read (None: the set
    could not be measured) and, when its last reading already predicted exactly these images, those
    probabilities (None otherwise), so the caller need not predict the same images again."""

    images: np.ndarray
    magnification: float | None
    probs: np.ndarray | None


@dataclass(frozen=True)
class MagnificationAdapter:
    """Measures a set's magnification against the training images' class rulers and undoes it.

    ``reference[c]`` is the median ruler (pixels, at ``size``) of training images of class ``c``
    (NaN: too few to say); build it with :meth:`from_images`. ``predict`` gives the class
    probabilities the per-class comparison needs. Calling the adapter on a set returns an
    :class:`Adapted`: the set resampled by ``1/z`` (unchanged when within ``tolerance``), the
    magnification ``z`` measured, and the predictor's probabilities for the returned images when a
    reading already computed them.
    """

    reference: tuple[float, ...]
    size: int
    predict: Callable[[np.ndarray], np.ndarray] | None = field(default=None, compare=False)
    tolerance: float = TOLERANCE

    @classmethod
    def from_images(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        *,
        predict: Callable[[np.ndarray], np.ndarray] | None = None,
        max_images: int = 3000,
        seed: int = 0,
        tolerance: float = TOLERANCE,
    ) -> MagnificationAdapter:
        images, labels = _check(images), np.asarray(labels)
        if len(images) != len(labels):
            raise ZooError(f"{len(images)} reference images but {len(labels)} labels")
        if len(images) > max_images:
            pick = np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))
            images, labels = images[pick], labels[pick]
        rulers = image_rulers(images)
        ref = []
        for c in range(num_classes):
            r = rulers[(labels == c) & np.isfinite(rulers)]
            ref.append(float(np.exp(np.median(np.log(r)))) if len(r) >= MIN_PER_CLASS else float("nan"))
        if not np.isfinite(ref).any():
            raise ZooError("the reference images have no measurable texture (flat images?); cannot build a ruler")
        return cls(reference=tuple(ref), size=int(images.shape[1]), predict=predict, tolerance=tolerance)

    @classmethod
    def from_dataset(cls, dataset, predict: Callable[[np.ndarray], np.ndarray] | None = None) -> MagnificationAdapter:
        """Class rulers from ``dataset``'s training split (a :class:`zoo.data.Dataset`); classes from ``predict``."""
        train = dataset.splits.get("train")
        if train is None or len(train) == 0:
            raise ZooError("magnification adaptation measures its rulers on the training images; the data has none")
        return cls.from_images(train.images, train.labels, len(dataset.class_names), predict=predict)

    def measure(self, images: np.ndarray, classes: np.ndarray | None = None) -> float | None:
        """Magnification of ``images`` relative to the training images of the same classes.

        ``classes`` default to the predictor's. None when the set cannot be measured: fewer than
        ``MIN_IMAGES`` images with a ruler and a reference class."""
        if classes is None:
            return self._reading(images)[0]
        images = self._checked(images)
        if len(images) < MIN_IMAGES:
            return None
        ref = np.asarray(self.reference)[np.asarray(classes)]
        ratio = np.log(image_rulers(images)) - np.log(ref)
        ratio = ratio[np.isfinite(ratio)]
        return float(np.exp(np.median(ratio))) if len(ratio) >= MIN_IMAGES else None

    def _checked(self, images: np.ndarray) -> np.ndarray:
        images = _check(images)
        if images.shape[1] != self.size:
            raise ZooError(f"the ruler was measured at {self.size} px; these images are {images.shape[1]} px")
        return images

    def _reading(self, images: np.ndarray) -> tuple[float | None, np.ndarray | None]:
        """(magnification, the predictor's probabilities for ``images``); (None, None) for a set too small to read."""
        images = self._checked(images)
        if len(images) < MIN_IMAGES:
            return None, None
        if self.predict is None:
            raise ZooError("measuring a set needs its classes or a predictor")
        probs = np.asarray(self.predict(images))
        return self.measure(images, probs.argmax(axis=1)), probs

    def __call__(self, images: np.ndarray) -> Adapted:
        """The set resampled by ``1/z``; unchanged when the first reading is within the tolerance or None.

        Beyond the tolerance, ``z`` is refined to the fixed point (module docstring): each step
        predicts the classes of the set resampled so far, reads it and multiplies the reading in.
        The last reading's probabilities come back when they are of the returned images (the
        iteration converged, or the set was left as it is)."""
        images = self._checked(images)
        first, probs = self._reading(images)
        if first is None or abs(first - 1.0) < self.tolerance:
            return Adapted(images, first, probs)
        z, current, probs = first, rescale(images, 1.0 / first), None
        for _ in range(MAX_STEPS - 1):
            step, probs = self._reading(current)
            if step is None or abs(np.log(step)) < CONVERGED:
                break
            z *= step
            current, probs = rescale(images, 1.0 / z), None  # always from the original: one resampling, not a chain
        return Adapted(current, z, probs)

    def to_dict(self) -> dict:
        """The rulers and settings as JSON (an export's metadata); read back with :meth:`from_dict`."""
        return {
            "method": "per-set magnification: class-conditional autocorrelation ruler, iterated (zoo.magnification)",
            "ruler": RULER,
            "reference_px": [None if not np.isfinite(r) else round(r, 3) for r in self.reference],
            "size": self.size,
            "tolerance": self.tolerance,
            "fraction": FRACTION,
            "max_steps": MAX_STEPS,
        }

    @classmethod
    def from_dict(
        cls, record, num_classes: int, size: int, predict: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> MagnificationAdapter:
        """The adapter :meth:`to_dict` wrote, checked against the model it belongs to (classes, input size)."""
        if not isinstance(record, dict) or not isinstance(record.get("reference_px"), list):
            raise ZooError("no magnification rulers recorded")
        if record.get("ruler") != RULER:
            raise ZooError(
                f"the magnification rulers were measured with another ruler ({record.get('ruler', 'the first, grey one')}, "
                f"this version reads {RULER})"
            )
        values = record["reference_px"]
        if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v > 0) for v in values):
            raise ZooError("the magnification rulers must be positive numbers of pixels (or null)")
        ref = tuple(float("nan") if v is None else float(v) for v in values)
        if len(ref) != num_classes or int(record.get("size", -1)) != size:
            raise ZooError("the magnification rulers do not match the model's classes and input size")
        return cls(ref, size, predict=predict, tolerance=float(record.get("tolerance", TOLERANCE)))
