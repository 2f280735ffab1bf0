"""Images that are probably not blood-smear crops, found in colour-statistics space.

Features (see :data:`zoo.curate.features.FEATURE_NAMES`) are robust-standardised (median,
1.4826·MAD, floor 0.01) and each image is scored by its mean distance to its ``k`` nearest
neighbours divided by the median of that distance over the dataset (scikit-learn
``NearestNeighbors``): "how much farther from its closest images than a typical image is".

Why not a robust Mahalanobis distance or LOF: PBC mixes a pink and a grey/blue staining batch,
so a single robust Gaussian (``MinCovDet``) flags hundreds of good grey-batch cells, and Local
Outlier Factor proved unstable on subsets (a text image scored 2.9 among 200 cells while real
cells reached 5.2). Measured on PBC with k = 5 (10 random subsets per size): real cells score
≤ 7.0 on all 13,675 images and ≤ 8.9 on subsets of 30–1,000; planted black, green, text,
noise, gradient and sky-blue images score ≥ 10.3 on every subset (28–170 on the full set).
The default threshold 10 sits in that gap; it is narrow for a few dozen images, where a lower
threshold finds more and risks more. Text printed in cell colours is not separable by colour
statistics alone (5–16). Nearly uniform images are flagged by rule as well, since many
identical blanks would sit close to each other.
"""

from __future__ import annotations

import numpy as np

from zoo.curate.features import FEATURE_NAMES

MIN_IMAGES = 8
BLANK_RANGE = 0.05  # luminance p99.5 - p0.5 below this: a (nearly) uniform image (a lone platelet spans ~0.3)


def find_outliers(
    stats: np.ndarray, ok: np.ndarray, *, threshold: float = 10.0, n_neighbors: int = 5
) -> tuple[list[dict], dict]:
    """``[{index, score, reasons}]`` plus a note on the method, for readable images only."""
    from sklearn.neighbors import NearestNeighbors

    idx = np.flatnonzero(ok)
    out: dict[int, dict] = {}
    lum_range = stats[idx, FEATURE_NAMES.index("lum_p995")] - stats[idx, FEATURE_NAMES.index("lum_p005")]
    for i, r in zip(idx, lum_range):
        if r < BLANK_RANGE:
            out[int(i)] = {
                "index": int(i),
                "score": None,
                "reasons": [f"nearly uniform image (luminance range {r:.3f})"],
            }
    method = {
        "method": "k-nearest-neighbour distance ratio on robust-standardised colour statistics",
        "threshold": threshold,
        "features": list(FEATURE_NAMES),
    }
    if len(idx) < MIN_IMAGES:
        method["skipped"] = f"fewer than {MIN_IMAGES} readable images"
        return sorted(out.values(), key=lambda o: o["index"]), method
    x = stats[idx]
    med = np.median(x, axis=0)
    z = (x - med) / np.maximum(1.4826 * np.median(np.abs(x - med), axis=0), 0.01)
    k = int(min(n_neighbors, len(idx) - 1))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    knn = dist[:, 1:].mean(axis=1)
    scores = knn / max(float(np.median(knn)), 1e-9)
    method["n_neighbors"] = k
    for pos in np.flatnonzero(scores > threshold):
        i = int(idx[pos])
        top = np.argsort(-np.abs(z[pos]))[:3]
        why = ", ".join(f"{FEATURE_NAMES[f]} {z[pos, f]:+.0f}σ" for f in top)
        entry = out.setdefault(i, {"index": i, "score": None, "reasons": []})
        entry["score"] = round(float(scores[pos]), 2)
        entry["reasons"].append(
            f"colour statistics far from every other image ({scores[pos]:.1f}× the typical neighbour distance; {why})"
        )
    return sorted(out.values(), key=lambda o: o["index"]), method
