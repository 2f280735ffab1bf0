"""Cross-fitting: how anything fitted on validation rows is scored without leakage.

Protocol (used by voting, stacking and calibration alike): the fit split (val) is cut into
``k`` stratified folds; for fold ``i`` the combiner (weights, meta-learner, temperature) is
fitted on the other folds only and predicts fold ``i``. The concatenation of those
predictions — the *out-of-fold* (OOF) predictions — is what gets scored on the fit split.
The artifact itself is then refitted on all rows and is scored only on other splits (test).
Fold membership is returned (and stored in the ensemble folder as ``folds.json``) so the
protocol can be audited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from ensemble.combine import as_member_probs, combine
from zoo.errors import ZooError

Fold = tuple[np.ndarray, np.ndarray]  # (train row indices, scoring row indices)
FitFn = Callable[[np.ndarray, np.ndarray], Mapping[str, Any]]


def make_folds(labels: np.ndarray, k: int = 5, seed: int = 0) -> list[Fold]:
    """``k`` folds, stratified when every class has at least ``k`` rows, else plain shuffled K-fold."""
    labels = np.asarray(labels)
    n = len(labels)
    if k < 2:
        raise ZooError(f"cross-validation needs at least 2 folds, got {k}")
    if n < 2 * k:
        raise ZooError(f"{n} rows are too few for {k}-fold cross-validation")
    counts = np.bincount(labels)
    if counts[counts > 0].min() >= k:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(n), labels)
    else:
        parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n))
    return [(np.sort(tr), np.sort(te)) for tr, te in parts]


def replicate_folds(folds: list[Fold], n: int, copies: int) -> list[Fold]:
    """Folds over ``copies`` blocks of ``n`` rows (row ``j*n + i`` is copy ``j`` of image ``i``): every copy
    of an image lands in that image's fold, so no fitted combiner is scored on a copy of a row it saw."""
    offsets = np.arange(copies) * n
    return [((tr[None, :] + offsets[:, None]).ravel(), (te[None, :] + offsets[:, None]).ravel()) for tr, te in folds]


def fold_of_row(folds: list[Fold], n: int) -> np.ndarray:
    """``(N,)`` fold number of each row's scoring fold (the compact form stored in folds.json)."""
    out = np.full(n, -1, dtype=np.int64)
    for i, (_, te) in enumerate(folds):
        out[te] = i
    if (out < 0).any():
        raise ZooError("folds do not cover every row")
    return out


def folds_from_rows(fold_ids: np.ndarray) -> list[Fold]:
    fold_ids = np.asarray(fold_ids)
    rows = np.arange(len(fold_ids))
    return [(rows[fold_ids != i], rows[fold_ids == i]) for i in range(int(fold_ids.max()) + 1)]


def check_disjoint(folds: list[Fold], n: int) -> None:
    """Every row is scored exactly once and never by a combiner that was fitted on it."""
    scored = np.zeros(n, dtype=np.int64)
    for tr, te in folds:
        if np.intersect1d(tr, te).size:
            raise AssertionError("a scoring row is among its fold's training rows")
        scored[te] += 1
    if not (scored == 1).all():
        raise AssertionError("folds do not score every row exactly once")


def cross_fit(fit: FitFn, member_probs: np.ndarray, labels: np.ndarray, folds: list[Fold]) -> np.ndarray:
    """Out-of-fold ensemble probabilities ``(N, C)``: ``fit`` only ever sees a fold's training rows."""
    mp = as_member_probs(member_probs)
    labels = np.asarray(labels, dtype=np.int64)
    check_disjoint(folds, len(labels))
    out = np.zeros(mp.shape[1:], dtype=np.float64)
    for tr, te in folds:
        spec = fit(mp[:, tr], labels[tr])
        out[te] = combine(spec, mp[:, te])
    return out
