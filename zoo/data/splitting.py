"""Seeded stratified train/val/test split (scikit-learn), recorded in the dataset's origin."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from zoo.data.dataset import Split
from zoo.errors import ZooError


def _take(split: Split, idx: np.ndarray) -> Split:
    idx = np.sort(idx)
    files = [split.files[i] for i in idx] if split.files is not None else None
    return Split(split.images[idx], split.labels[idx], files)


def stratified_split(whole: Split, *, seed: int, val_fraction: float, test_fraction: float) -> dict[str, Split]:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ZooError(f"invalid split fractions val={val_fraction} test={test_fraction}")
    idx = np.arange(len(whole))
    counts = np.bincount(whole.labels)
    classes = int((counts > 0).sum())
    out = {}
    rest = idx
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        n_take = int(round(len(idx) * fraction))
        if fraction <= 0 or n_take == 0:
            continue
        if n_take >= len(rest):
            raise ZooError(f"{len(whole)} images are too few for a {name} split of {fraction:.0%}")
        labels = whole.labels[rest]
        rest_counts = np.bincount(labels)
        # Stratify whenever sklearn can: every class twice, and room for each class on both sides.
        can = rest_counts[rest_counts > 0].min() >= 2 and classes <= n_take <= len(rest) - classes
        rest, taken = train_test_split(rest, test_size=n_take, random_state=seed, stratify=labels if can else None)
        out[name] = _take(whole, taken)
    out["train"] = _take(whole, rest)
    return {k: out[k] for k in ("train", "val", "test") if k in out}
