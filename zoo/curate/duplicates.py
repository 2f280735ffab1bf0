"""Exact and near duplicates, within and across splits.

Exact: equal sha256 of file bytes or of decoded pixels. Near: candidate pairs whose pHash
(minimum over the 8 symmetries) is within ``max_hamming`` bits, *verified* by a
shift-tolerant normalised cross-correlation of high-passed 64×64 thumbnails. The
verification matters on blood-cell data: every image is "a purple blob centred on a pink
background", so distinct cells routinely sit 6–10 pHash bits apart; their fine texture does
not correlate, whereas a re-encoded, re-exposed, rotated or slightly re-framed copy of the same
field does (on PBC: copies score ≥ 0.86, distinct cells ≤ 0.83 among pHash candidates).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from zoo.curate.features import Features, dihedral

SYMMETRIES = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "transpose",
    "rot90+transpose",
    "rot180+transpose",
    "rot270+transpose",
)


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def groups(self, members) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for i in members:
            out.setdefault(self.find(i), []).append(i)
        return [sorted(g) for g in out.values() if len(g) > 1]


def exact_groups(feats: Features) -> list[dict]:
    """Groups of ≥2 readable images with identical file bytes or identical decoded pixels."""
    ok = np.flatnonzero(feats.ok)
    uf = UnionFind(len(feats.ok))
    for key in (feats.file_sha, feats.pixel_sha):
        first: dict[str, int] = {}
        for i in ok:
            if key[i] is None:
                continue
            j = first.setdefault(key[i], i)
            if j != i:
                uf.union(i, j)
    out = []
    for g in uf.groups(ok):
        same_bytes = all(feats.file_sha[i] is not None and feats.file_sha[i] == feats.file_sha[g[0]] for i in g)
        out.append({"members": g, "match": "file bytes" if same_bytes else "decoded pixels"})
    return out


def _highpass(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    return g - gaussian_filter(g, (0, 2, 2))


def shift_ncc(a: np.ndarray, b: np.ndarray, max_shift: int = 8) -> np.ndarray:
    """Max normalised cross-correlation over shifts up to ``max_shift`` px, for stacks (P, S, S)."""
    s = a.shape[-1]
    win = np.outer(np.hanning(s), np.hanning(s)).astype(np.float32)
    a = a * win
    b = b * win
    a = a - a.mean((1, 2), keepdims=True)
    b = b - b.mean((1, 2), keepdims=True)
    xc = np.fft.irfft2(np.fft.rfft2(a) * np.conj(np.fft.rfft2(b)), s=(s, s))
    xc = np.fft.fftshift(xc, axes=(1, 2))[
        :, s // 2 - max_shift : s // 2 + max_shift + 1, s // 2 - max_shift : s // 2 + max_shift + 1
    ]
    norm = np.linalg.norm(a, axis=(1, 2)) * np.linalg.norm(b, axis=(1, 2))
    return np.where(norm > 1e-6, xc.reshape(len(a), -1).max(1) / np.maximum(norm, 1e-6), 0.0)


def near_pairs(
    feats: Features, candidates: np.ndarray, *, max_hamming: int = 10, min_score: float = 0.85
) -> list[dict]:
    """Verified near-duplicate pairs among ``candidates`` (indices; give one per exact group)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if len(candidates) < 2:
        return []
    hashes = feats.phash[candidates]  # (M, 8)
    base = hashes[:, 0]
    m = len(candidates)
    chunk = max(16, (1 << 24) // m)  # rows per block: about 128 MB of uint64 XORs at a time
    found = []  # (a, b, t, hamming) in candidate positions, a < b
    for start in range(0, m, chunk):
        block = hashes[start : start + chunk]  # (c, 8)
        best = np.full((len(block), m), 255, dtype=np.uint8)
        best_t = np.zeros((len(block), m), dtype=np.uint8)
        for t in range(block.shape[1]):
            d = np.bitwise_count(block[:, t, None] ^ base[None, :])
            better = d < best
            best[better], best_t[better] = d[better], t
        rows, cols = np.nonzero(best <= max_hamming)
        keep = cols > rows + start
        for r, c in zip(rows[keep], cols[keep]):
            found.append((start + r, c, best_t[r, c], best[r, c]))
    if not found:
        return []
    found_arr = np.array(found, dtype=np.int64)
    hp = _highpass(feats.gray[candidates])
    out = []
    for start in range(0, len(found_arr), 4096):
        part = found_arr[start : start + 4096]
        a = np.stack([dihedral(hp[i])[t] for i, _, t, _ in part])
        scores = shift_ncc(a, hp[part[:, 1]])
        for (i, j, t, h), score in zip(part, scores):
            if score >= min_score:
                out.append(
                    {
                        "a": int(candidates[i]),
                        "b": int(candidates[j]),
                        "hamming": int(h),
                        "score": round(float(score), 4),
                        "symmetry": SYMMETRIES[t],
                    }
                )
    return out
