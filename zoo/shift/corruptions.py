"""The corruptions of the shift suite: NumPy, vectorised over a batch, five severities each.

Every corruption is ``fn(x, level, rng) -> x'`` on float32 ``(N, H, W, 3)`` pixels in 0..255
(the result is clipped and rounded by :func:`zoo.shift.corrupt`). ``level`` is the magnitude
of one severity (``LEVELS[name][severity - 1]``); the generator is seeded by (seed, name) only,
never by the severity, so the five severities of one seed push every image along the *same*
random direction, further each time (severity is monotone image by image, as in ImageNet-C).

Magnitudes given in pixels are for a 128-px image and scale with the actual size, so a
64-px copy of a smear is blurred/shifted like the 128-px original. What each family models:

- colour: the stain batch and protocol (HED stain amounts), camera white balance and colour
  response (per-channel gains, saturation, hue);
- illumination: lamp intensity and condenser setting (brightness, gamma, contrast), uneven
  illumination (vignetting);
- optics: focus (defocus disc), stage/camera vibration (motion blur), lateral chromatic
  aberration of cheaper objectives (colour channels magnified differently);
- sensor: read/shot noise (Gaussian, Poisson), storage (JPEG), lower camera resolution
  (pixelation);
- artefacts: stain precipitate (dark violet deposits), air bubbles under the coverslip
  (bright disc with a dark rim), fibres/dust (thin dark segments); each touches a bounded area;
- geometry: another magnification or camera pixel size (zoom in / zoom out about the centre).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from zoo.augment.stain import BETA_SCALE, HED_FROM_RGB, RGB_FROM_HED

REFERENCE_SIZE = 128
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

Fn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    name: str
    family: str
    fn: Fn
    levels: tuple[float, float, float, float, float]
    help: str


# ----------------------------------------------------------------------------- helpers
def _scale(x: np.ndarray) -> float:
    return min(x.shape[1], x.shape[2]) / REFERENCE_SIZE


def _signed(rng: np.random.Generator, n: int, *shape: int) -> np.ndarray:
    """Per-image random direction with magnitude in [0.7, 1]: severities share it, so they are ordered."""
    sign = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, *shape))
    return (sign * rng.uniform(0.7, 1.0, (n, *shape))).astype(np.float32)


def _col(v: np.ndarray) -> np.ndarray:
    """(N, ...) per-image values broadcast over (N, H, W, 3)."""
    v = np.asarray(v, dtype=np.float32)
    return v.reshape(v.shape[0], *([1] * 3)) if v.ndim == 1 else v.reshape(v.shape[0], 1, 1, -1)


def _reflect(c: np.ndarray, n: int) -> np.ndarray:
    """Mirror coordinates into [0, n-1] (reflection about the edge pixel centres)."""
    if n == 1:
        return np.zeros_like(c)
    period = 2 * (n - 1)
    c = np.mod(np.abs(c), period)
    return (n - 1) - np.abs(c - (n - 1))


def _bilinear_matrix(coords: np.ndarray, n: int) -> np.ndarray:
    """(B, M, n) interpolation matrices: row i samples position ``coords[b, i]`` (mirrored borders)."""
    c = _reflect(coords.astype(np.float32), n)
    i0 = np.floor(c).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w1 = (c - i0).astype(np.float32)
    m = np.zeros((*c.shape, n), dtype=np.float32)
    np.put_along_axis(m, i0[..., None], (1 - w1)[..., None], axis=-1)
    _add_last(m, i1, w1)
    return m


def _add_last(m: np.ndarray, idx: np.ndarray, w: np.ndarray) -> None:
    cur = np.take_along_axis(m, idx[..., None], axis=-1)
    np.put_along_axis(m, idx[..., None], cur + w[..., None], axis=-1)


def _separable(x: np.ndarray, my: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """Apply a per-image linear map along rows (``my`` (N, H, H)) and columns (``mx`` (N, W, W)): BLAS, no gathers."""
    n, h, w, c = x.shape
    t = np.matmul(my, x.reshape(n, h, w * c)).reshape(n, h, w, c)  # rows
    t = np.matmul(mx[:, None], t)  # (N, 1, W, W) @ (N, H, W, C): columns
    return t.astype(np.float32)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    return yy, xx


def _convolve(x: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Convolve each image with its own kernel ``(N, k, k)`` (k odd): FFT on mirror-padded images."""
    n, h, w, _ = x.shape
    k = kernels.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    hp, wp = h + 2 * p, w + 2 * p
    kp = np.zeros((n, hp, wp), dtype=np.float32)
    kp[:, :k, :k] = kernels
    kp = np.roll(kp, (-p, -p), axis=(1, 2))  # kernel centre at the origin
    spec = sfft.rfft2(xp, axes=(1, 2)) * sfft.rfft2(kp, axes=(1, 2))[..., None]
    out = sfft.irfft2(spec, s=(hp, wp), axes=(1, 2))
    return out[:, p : p + h, p : p + w].astype(np.float32)


def _disc_kernels(radii: np.ndarray) -> np.ndarray:
    r_max = int(np.ceil(radii.max() + 1.0)) if len(radii) else 0
    yy, xx = _grid(2 * r_max + 1, 2 * r_max + 1)
    d = np.hypot(yy - r_max, xx - r_max)
    ker = np.clip(radii[:, None, None] + 1.0 - d[None], 0.0, 1.0)  # disc with a 1-px soft edge
    return ker / ker.sum(axis=(1, 2), keepdims=True)


def _line_kernels(lengths: np.ndarray, angles: np.ndarray) -> np.ndarray:
    half = int(np.ceil(lengths.max() / 2)) + 1
    k = 2 * half + 1
    n = len(lengths)
    ker = np.zeros((n, k, k), dtype=np.float32)
    t = np.linspace(-0.5, 0.5, 4 * k + 1, dtype=np.float32)[None] * lengths[:, None]  # (n, samples)
    py = half + t * np.sin(angles)[:, None]
    px = half + t * np.cos(angles)[:, None]
    y0, x0 = np.floor(py).astype(int), np.floor(px).astype(int)
    wy, wx = py - y0, px - x0
    b = np.repeat(np.arange(n)[:, None], t.shape[1], axis=1)
    for dy, dx, wgt in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        np.add.at(ker, (b, y0 + dy, x0 + dx), wgt)
    return ker / ker.sum(axis=(1, 2), keepdims=True)


def _blend(x: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """x·(1−α) + colour·α with α (N, H, W) and colour (N, 3) or (N, H, W, 3)."""
    a = alpha[..., None]
    c = colour[:, None, None, :] if colour.ndim == 2 else colour
    return x * (1 - a) + c * a


# ----------------------------------------------------------------------------- colour / stain
def channel_gain(x, level, rng):
    d = rng.uniform(-1, 1, (len(x), 3)).astype(np.float32)
    d /= np.maximum(np.abs(d).max(axis=1, keepdims=True), 1e-6)  # the largest channel change is `level`
    return x * _col(1 + level * d * rng.uniform(0.7, 1.0, (len(x), 1)))


def white_balance(x, level, rng):
    t = _signed(rng, len(x))  # colour temperature: warm (R up, B down) or cool
    tint = rng.uniform(-0.3, 0.3, len(x)).astype(np.float32)  # green-magenta, smaller
    gains = np.stack([1 + level * t, 1 + level * tint * np.abs(t), 1 - level * t], axis=1)
    return x * _col(gains)


def hed_stain(x, level, rng):
    n = len(x)
    alpha = 1 + level * _signed(rng, n, 3)
    beta = level * BETA_SCALE * _signed(rng, n, 3)
    od = -np.log((x + 1.0) / 256.0)
    hed = od @ HED_FROM_RGB.astype(np.float32)
    hed = hed * alpha[:, None, None, :] + beta[:, None, None, :]
    return np.clip(256.0 * np.exp(-(hed @ RGB_FROM_HED.astype(np.float32))) - 1.0, 0.0, 255.0)


def saturation(x, level, rng):
    f = np.exp(level * _signed(rng, len(x)))
    gray = (x @ LUMA)[..., None]
    return gray + _col(f) * (x - gray)


_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32)
_YIQ2RGB = np.linalg.inv(_RGB2YIQ).astype(np.float32)


def hue(x, level, rng):
    theta = 2 * np.pi * level * _signed(rng, len(x))  # rotation of the chroma plane, in turns
    c, s = np.cos(theta), np.sin(theta)
    rot = np.zeros((len(x), 3, 3), dtype=np.float32)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = np.einsum("ij,njk,kl->nil", _YIQ2RGB, rot, _RGB2YIQ)  # RGB -> YIQ -> rotate -> RGB
    return np.einsum("nhwc,ndc->nhwd", x, m)


# ----------------------------------------------------------------------------- illumination
def brightness(x, level, rng):
    return x + _col(255.0 * level * _signed(rng, len(x)))


def gamma(x, level, rng):
    g = np.exp(level * _signed(rng, len(x)))
    return 255.0 * np.power(np.clip(x / 255.0, 0.0, 1.0), _col(g))


def contrast(x, level, rng):
    f = np.exp(level * _signed(rng, len(x)))
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return mean + _col(f) * (x - mean)


def vignetting(x, level, rng):
    n, h, w, _ = x.shape
    yy, xx = _grid(h, w)
    cy = (h - 1) / 2 + rng.uniform(-0.25, 0.25, n).astype(np.float32) * h
    cx = (w - 1) / 2 + rng.uniform(-0.25, 0.25, n).astype(np.float32) * w
    r2 = ((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    depth = level * rng.uniform(0.8, 1.0, n).astype(np.float32)
    return x * (1 - depth[:, None, None] * np.minimum(r2, 1.5))[..., None]


# ----------------------------------------------------------------------------- optics
def defocus(x, level, rng):
    radii = (level * _scale(x) * rng.uniform(0.8, 1.0, len(x))).astype(np.float32)
    return _convolve(x, _disc_kernels(radii))


def motion_blur(x, level, rng):
    lengths = (level * _scale(x) * rng.uniform(0.8, 1.0, len(x))).astype(np.float32)
    angles = rng.uniform(0, np.pi, len(x)).astype(np.float32)
    return _convolve(x, _line_kernels(lengths, angles))


def chromatic_shift(x, level, rng):
    """Lateral chromatic aberration: red and blue magnified in opposite senses about an off-centre axis."""
    n, h, w, _ = x.shape
    e = (level * _scale(x) / (min(h, w) / 2) * _signed(rng, n)).astype(np.float32)  # `level` px at the border
    cy = ((h - 1) / 2 + rng.uniform(-0.2, 0.2, n) * h).astype(np.float32)
    cx = ((w - 1) / 2 + rng.uniform(-0.2, 0.2, n) * w).astype(np.float32)
    out = x.copy()
    for ch, sign in ((0, 1.0), (2, -1.0)):
        f = 1 + sign * e
        out[..., ch : ch + 1] = _separable(x[..., ch : ch + 1], _magnify(h, f, cy), _magnify(w, f, cx))
    return out


# ----------------------------------------------------------------------------- sensor
def gaussian_noise(x, level, rng):
    std = level * rng.uniform(0.8, 1.0, len(x)).astype(np.float32)
    return x + rng.standard_normal(x.shape, dtype=np.float32) * _col(std)


def poisson_noise(x, level, rng):
    """Shot noise: variance ∝ intensity, ``level`` photons at full scale (normal approximation of Poisson)."""
    photons = level / rng.uniform(0.8, 1.0, len(x))  # fewer photons = noisier
    std = np.sqrt(np.clip(x, 0, 255) * (255.0 / _col(photons)))
    return x + rng.standard_normal(x.shape, dtype=np.float32) * std


def jpeg(x, level, rng):
    from PIL import Image

    quality = np.clip(np.round(level + rng.uniform(0, 5, len(x))), 1, 95).astype(int)
    out = np.empty_like(x)
    u8 = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    for i in range(len(x)):
        buf = io.BytesIO()
        Image.fromarray(u8[i]).save(buf, format="JPEG", quality=int(quality[i]))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"), dtype=np.float32)
    return out


def _block_average(size: int, step: np.ndarray) -> np.ndarray:
    """(N, size, size): each pixel becomes the mean of its block of ``step`` pixels (box down, nearest up)."""
    bins = np.floor(np.arange(size, dtype=np.float32)[None] / step[:, None]).astype(np.int64)  # (N, size)
    same = (bins[:, :, None] == bins[:, None, :]).astype(np.float32)
    return same / same.sum(axis=2, keepdims=True)


def pixelate(x, level, rng):
    """Box-average down to ``level`` × the resolution, nearest-neighbour back up (a coarser camera)."""
    n, h, w, _ = x.shape
    step = (1 / np.clip(level * rng.uniform(1.0, 1.1, n), 0.05, 1.0)).astype(np.float32)
    return _separable(x, _block_average(h, step), _block_average(w, step))


# ----------------------------------------------------------------------------- slide artefacts
def _discs(n, h, w, k, radius, rng, scale):
    """(N, K) centres and radii of K discs per image, centres anywhere in the image."""
    cy = rng.uniform(0, h - 1, (n, k)).astype(np.float32)
    cx = rng.uniform(0, w - 1, (n, k)).astype(np.float32)
    r = (radius * scale * rng.uniform(0.6, 1.0, (n, k))).astype(np.float32)
    return cy, cx, r


def stain_deposits(x, level, rng):
    """``level`` dark violet precipitate spots of 1.5–3 px radius (at 128 px), nearly opaque."""
    n, h, w, _ = x.shape
    k = int(level)
    yy, xx = _grid(h, w)
    cy, cx, r = (v[:, :k] for v in _discs(n, h, w, 8, 3.0, rng, _scale(x)))  # 8 drawn: severities share spots
    d = np.hypot(yy[None, None] - cy[..., None, None], xx[None, None] - cx[..., None, None])
    alpha = np.clip(r[..., None, None] + 0.5 - d, 0, 1).max(axis=1) * 0.9
    colour = np.array([70.0, 35.0, 95.0], dtype=np.float32) * rng.uniform(0.7, 1.2, (n, 1)).astype(np.float32)
    return _blend(x, alpha, colour)


def bubbles(x, level, rng):
    """One air bubble of radius ``level`` px (at 128 px): a brighter disc with a dark refractive rim."""
    n, h, w, _ = x.shape
    yy, xx = _grid(h, w)
    cy, cx, r = _discs(n, h, w, 1, level, rng, _scale(x))
    d = np.hypot(yy[None] - cy[:, :1, None], xx[None] - cx[:, :1, None])
    rr = r[:, :1, None]
    rim_w = np.maximum(1.0, 0.18 * rr)
    inside = np.clip(rr - rim_w - d + 0.5, 0, 1)
    rim = np.clip(1 - np.abs(d - (rr - rim_w / 2)) / (rim_w / 2 + 0.5), 0, 1)
    out = _blend(x, inside * 0.35, np.full((n, 3), 245.0, dtype=np.float32))
    return _blend(out, rim * 0.8, np.full((n, 3), 40.0, dtype=np.float32))


def debris(x, level, rng):
    """Fibres/dust: 1–3 thin dark segments of about ``level`` px (at 128 px)."""
    n, h, w, _ = x.shape
    k = 1 if level < 15 else 2 if level < 30 else 3
    yy, xx = _grid(h, w)
    s = _scale(x)
    # three fibres are drawn (severities share them); the first k are laid down
    y0 = rng.uniform(0, h - 1, (n, 3)).astype(np.float32)[:, :k]
    x0 = rng.uniform(0, w - 1, (n, 3)).astype(np.float32)[:, :k]
    ang = rng.uniform(0, np.pi, (n, 3)).astype(np.float32)[:, :k]
    length = (level * s * rng.uniform(0.7, 1.0, (n, 3))).astype(np.float32)[:, :k]
    width = max(0.6, 0.8 * s)
    dy, dx = np.sin(ang) * length, np.cos(ang) * length
    py, px = yy[None, None] - y0[..., None, None], xx[None, None] - x0[..., None, None]
    t = np.clip((py * dy[..., None, None] + px * dx[..., None, None]) / (length**2)[..., None, None], 0, 1)
    d = np.hypot(py - t * dy[..., None, None], px - t * dx[..., None, None])
    alpha = np.clip(width + 0.5 - d, 0, 1).max(axis=1) * 0.85
    colour = np.array([55.0, 45.0, 40.0], dtype=np.float32) * rng.uniform(0.7, 1.3, (n, 1)).astype(np.float32)
    return _blend(x, alpha, colour)


# ----------------------------------------------------------------------------- geometry
def _magnify(size: int, factor: np.ndarray, centre: np.ndarray | float | None = None) -> np.ndarray:
    """(N, size, size) bilinear matrices magnifying ×factor about ``centre`` (default: the middle)."""
    centre = (size - 1) / 2 if centre is None else centre
    c = np.broadcast_to(np.asarray(centre, dtype=np.float32), factor.shape)[:, None]
    pos = np.arange(size, dtype=np.float32)[None]
    return _bilinear_matrix(c + (pos - c) / factor[:, None], size)


def magnify(x: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Float (N, H, W, C) images magnified ×``factor`` (one per image) about the centre, bilinear;
    a border that comes into view when shrinking is mirrored. The suite's geometry family and
    :mod:`zoo.magnification` (which undoes it) both resample through this one function."""
    _, h, w, _ = x.shape
    return _separable(x, _magnify(h, factor), _magnify(w, factor))


def zoom_in(x, level, rng):
    """Higher magnification: objects ×(1 + level) larger about the centre."""
    return magnify(x, (1 + level * rng.uniform(0.8, 1.0, len(x))).astype(np.float32))


def zoom_out(x, level, rng):
    """Lower magnification: objects ÷(1 + level), the border filled by mirroring."""
    return magnify(x, (1 / (1 + level * rng.uniform(0.8, 1.0, len(x)))).astype(np.float32))


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption(
            "channel_gain",
            "colour",
            channel_gain,
            (0.06, 0.12, 0.18, 0.26, 0.35),
            "per-channel RGB gains, largest change ±level",
        ),
        Corruption(
            "white_balance",
            "colour",
            white_balance,
            (0.05, 0.1, 0.15, 0.22, 0.3),
            "colour temperature: R×(1±t), B×(1∓t), slight tint",
        ),
        Corruption(
            "hed_stain",
            "colour",
            hed_stain,
            (0.08, 0.15, 0.22, 0.3, 0.4),
            "HED stain amounts ×(1±level), shift ±0.25·level OD",
        ),
        Corruption("saturation", "colour", saturation, (0.2, 0.4, 0.6, 0.85, 1.1), "saturation ×e^±level"),
        Corruption("hue", "colour", hue, (0.015, 0.03, 0.05, 0.075, 0.1), "hue rotation ±level turns (YIQ)"),
        Corruption("brightness", "illumination", brightness, (0.05, 0.1, 0.15, 0.22, 0.3), "add ±level·255"),
        Corruption("gamma", "illumination", gamma, (0.1, 0.2, 0.3, 0.45, 0.6), "gamma e^±level"),
        Corruption(
            "contrast", "illumination", contrast, (0.15, 0.3, 0.45, 0.6, 0.8), "contrast ×e^±level about the mean"
        ),
        Corruption(
            "vignetting",
            "illumination",
            vignetting,
            (0.1, 0.2, 0.3, 0.45, 0.6),
            "radial fall-off to 1−level at the corners, off-centre",
        ),
        Corruption(
            "defocus", "optics", defocus, (0.6, 1.2, 2.0, 2.8, 3.8), "disc blur of radius level px (1-px soft edge)"
        ),
        Corruption(
            "motion_blur", "optics", motion_blur, (2.0, 3.5, 5.0, 7.0, 9.0), "line blur of level px at a random angle"
        ),
        Corruption(
            "chromatic_shift",
            "optics",
            chromatic_shift,
            (0.5, 1.0, 1.5, 2.2, 3.0),
            "red/blue misregistered by up to level px (lateral CA)",
        ),
        Corruption(
            "gaussian_noise",
            "sensor",
            gaussian_noise,
            (4.0, 8.0, 12.0, 18.0, 26.0),
            "additive Gaussian noise, std level (0..255)",
        ),
        Corruption(
            "poisson_noise",
            "sensor",
            poisson_noise,
            (1000.0, 400.0, 160.0, 70.0, 30.0),
            "shot noise (normal approx.), level photons at full scale",
        ),
        Corruption(
            "jpeg", "sensor", jpeg, (70.0, 45.0, 30.0, 18.0, 10.0), "JPEG re-compression at quality level..level+5"
        ),
        Corruption(
            "pixelate",
            "sensor",
            pixelate,
            (0.8, 0.65, 0.5, 0.4, 0.3),
            "box-average to level × the resolution, blocky upsampling",
        ),
        Corruption(
            "stain_deposits",
            "artefacts",
            stain_deposits,
            (1.0, 2.0, 3.0, 5.0, 8.0),
            "level dark violet precipitate spots",
        ),
        Corruption("bubbles", "artefacts", bubbles, (8.0, 12.0, 16.0, 21.0, 26.0), "one air bubble of radius level px"),
        Corruption("debris", "artefacts", debris, (8.0, 14.0, 20.0, 28.0, 36.0), "1–3 dark fibres of level px"),
        Corruption(
            "zoom_in", "geometry", zoom_in, (0.08, 0.15, 0.22, 0.32, 0.45), "magnification ×(1+level) about the centre"
        ),
        Corruption(
            "zoom_out",
            "geometry",
            zoom_out,
            (0.08, 0.15, 0.22, 0.32, 0.45),
            "magnification ÷(1+level), mirrored border",
        ),
    )
}
