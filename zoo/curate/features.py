"""Per-image fingerprints and statistics, computed in one pass over the files.

For each image: sha256 of the file bytes and of the decoded RGB pixels (exact duplicates,
including the same picture saved twice with different metadata), a 64×64 grayscale thumbnail
(for verifying near-duplicate candidates) and the DCT perceptual hash (pHash, as in ``imagehash.phash``: low 8×8 DCT block of a 32×32
thumbnail thresholded at its median) for all 8 square symmetries (cells have no orientation,
so a rotated copy is still a leak), and a small vector of colour statistics for outlier
detection. Decoding uses the loader's :func:`zoo.data.images.decode`, so curation sees the
same pixels training does.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dctn

from zoo.curate.scan import Scan
from zoo.progress import progress
from zoo.safeio import MAX_IMAGE_BYTES, NotReadable, read_bytes

THUMB = 64  # verification thumbnail; the hash uses its 32×32 box-downsample
STATS_SIZE = 64
FEATURE_NAMES = (
    "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b",
    "lum_p005", "lum_p05", "lum_p50", "lum_p95", "lum_p995", "saturation", "stained_fraction", "green_fraction", "edges",
)  # fmt: skip
_BITS = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)


@dataclass
class Features:
    """Arrays aligned with ``scan.records``; ``ok[i]`` is False when image ``i`` could not be read."""

    ok: np.ndarray  # bool (N,)
    errors: dict[int, str]
    file_sha: list[str | None]
    pixel_sha: list[str | None]
    sizes: list[tuple[int, int] | None]  # original (width, height)
    gray: np.ndarray  # uint8 (N, 64, 64)
    phash: np.ndarray  # uint64 (N, 8): column t = hash of symmetry t of the image, t=0 identity
    stats: np.ndarray  # float64 (N, len(FEATURE_NAMES))


def dihedral(a: np.ndarray) -> list[np.ndarray]:
    """The 8 symmetries of a square array (rotations by 0/90/180/270°, then their transposes)."""
    rots = [np.rot90(a, k) for k in range(4)]
    return rots + [r.T if r.ndim == 2 else np.swapaxes(r, 0, 1) for r in rots]


def phash(gray: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash of a 32×32 grayscale array."""
    block = dctn(gray.astype(np.float64), norm="ortho")[:8, :8].ravel()
    bits = block > np.median(block[1:])
    return np.bitwise_or.reduce(_BITS[bits]) if bits.any() else np.uint64(0)


def _resize(rgb: np.ndarray, size: int) -> Image.Image:
    img = Image.fromarray(rgb)
    method = Image.Resampling.BOX if min(rgb.shape[:2]) >= size else Image.Resampling.BILINEAR
    return img.resize((size, size), method)


def colour_stats(rgb: np.ndarray) -> np.ndarray:
    """Statistics that separate stained smears from anything else (see FEATURE_NAMES)."""
    x = np.asarray(_resize(rgb, STATS_SIZE), dtype=np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    mx, mn = x.max(-1), x.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    edges = np.abs(np.diff(lum, axis=0)).mean() + np.abs(np.diff(lum, axis=1)).mean()
    return np.array(
        [
            r.mean(), g.mean(), b.mean(), r.std(), g.std(), b.std(),
            *np.percentile(lum, [0.5, 5, 50, 95, 99.5]),
            sat.mean(), (sat > 0.25).mean(), ((g > r + 0.02) & (g > b + 0.02)).mean(), edges,
        ]
    )  # fmt: skip


def _one(rgb: np.ndarray):
    gray = np.asarray(_resize(rgb, THUMB).convert("L"), dtype=np.uint8)
    small = gray.astype(np.float64).reshape(32, THUMB // 32, 32, THUMB // 32).mean(axis=(1, 3))
    hashes = np.array([phash(v) for v in dihedral(small)], dtype=np.uint64)
    pix = hashlib.sha256(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()
    return gray, hashes, pix, colour_stats(rgb)


def compute(scan: Scan, workers: int = 2) -> Features:
    """Read, hash and describe every record of ``scan`` (unreadable files are recorded, not fatal)."""
    from zoo.data.images import BadImage, decode

    n = len(scan.records)
    feats = Features(
        ok=np.zeros(n, bool), errors={}, file_sha=[None] * n, pixel_sha=[None] * n, sizes=[None] * n,
        gray=np.zeros((n, THUMB, THUMB), np.uint8), phash=np.zeros((n, 8), np.uint64), stats=np.zeros((n, len(FEATURE_NAMES))),
    )  # fmt: skip

    def work(i: int):
        rec = scan.records[i]
        file_sha = None
        if rec.path is not None:
            try:
                data = read_bytes(rec.path, MAX_IMAGE_BYTES)  # regular files only: a FIFO never blocks the scan
            except NotReadable as exc:
                return i, None, exc.reason
            except OSError as exc:
                return i, None, f"cannot read file ({exc.strerror or exc})"
            file_sha = hashlib.sha256(data).hexdigest()
            try:
                rgb = decode(data, None, rec.path)
            except BadImage as exc:
                return i, (file_sha,), str(exc)
        else:
            rgb = scan.arrays[rec.split][rec.index]
        return i, (file_sha, (rgb.shape[1], rgb.shape[0]), *_one(rgb)), None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, result, error in progress(pool.map(work, range(n)), total=n, desc="curating"):
            if error is not None:
                feats.errors[i] = error
                if result:
                    feats.file_sha[i] = result[0]
                continue
            feats.file_sha[i], feats.sizes[i], feats.gray[i], feats.phash[i], feats.pixel_sha[i], feats.stats[i] = (
                result
            )
            feats.ok[i] = True
    return feats
