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
    stratify = whole.labels if counts[counts > 0].min() >= 3 else None
    out = {}
    rest = idx
    if test_fraction > 0:
        rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
        out["test"] = _take(whole, test)
    if val_fraction > 0:
        strat_rest = whole.labels[rest] if stratify is not None else None
        rest, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=strat_rest)
        out["val"] = _take(whole, val)
    out["train"] = _take(whole, rest)
    return {k: out[k] for k in ("train", "val", "test") if k in out}
