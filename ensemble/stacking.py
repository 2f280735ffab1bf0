"""Stacking: a linear scikit-learn meta-learner on the members' (log-)probabilities.

Only linear learners are offered because the fitted model must be stored as plain arrays
(``coef``, ``intercept``) in ``ensemble.json`` — no pickles — and be exported as one ONNX
graph: ``z = intercept + coef · x``, ``p = softmax(z / T)``.

Leakage protocol (see :mod:`ensemble.cv`): the meta-learner is fitted on validation rows, so
its validation score is always the out-of-fold score of :func:`ensemble.cv.cross_fit`
(every row predicted by a learner that never saw it). The stored learner is refitted on all
validation rows and is scored only on other splits. When calibrating, the temperature is
fitted on the learner's *out-of-fold* scores of an inner ``k``-fold split of the rows it is
given (in-sample scores of a refitted learner are over-confident and would bias ``T`` low).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from threadpoolctl import threadpool_limits

from ensemble.calibration import fit_temperature
from ensemble.combine import EPS, FEATURES, as_member_probs, logits, stack_features
from ensemble.cv import Fold, cross_fit, make_folds
from zoo.errors import ZooError

log = logging.getLogger(__name__)

LEARNERS = {
    # name: (class, default params) — linear models whose decision function is coef·x + intercept.
    # newton-cholesky: exact second-order steps, converges in a handful of iterations on M*C features.
    "logistic": (LogisticRegression, {"C": 1.0, "solver": "newton-cholesky", "max_iter": 500}),
    "ridge": (RidgeClassifier, {"alpha": 1.0}),
}
ABSENT_CLASS_INTERCEPT = -30.0


def make_learner(name: str = "logistic", **params: Any):
    try:
        cls, defaults = LEARNERS[name]
    except KeyError:
        raise ZooError(f"unknown meta-learner '{name}'; choose from {sorted(LEARNERS)}") from None
    return cls(**{**defaults, **params})


def fit_meta(
    member_probs: np.ndarray,
    labels: np.ndarray,
    learner: str = "logistic",
    learner_params: dict[str, Any] | None = None,
    features: str = "log",
    eps: float = EPS,
) -> dict[str, Any]:
    """Fit the meta-learner on these rows; return the stack spec (``temperature`` 1)."""
    mp = as_member_probs(member_probs)
    if features not in FEATURES:
        raise ZooError(f"unknown stacking features '{features}'; choose from {FEATURES}")
    labels = np.asarray(labels, dtype=np.int64)
    c = mp.shape[2]
    x = stack_features(mp, features, eps)
    present = np.unique(labels)
    coef = np.zeros((c, x.shape[1]))
    intercept = np.full(c, ABSENT_CLASS_INTERCEPT)
    if len(present) == 1:
        # Degenerate fold: one class only; predict it with certainty-ish scores.
        intercept[present[0]] = 0.0
    else:
        model = make_learner(learner, **(learner_params or {}))
        # Tiny problems: BLAS threads only add contention (measured 17x slower on 2 busy cores).
        with threadpool_limits(1):
            model.fit(x, labels)
        w, b = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
        if len(model.classes_) == 2 and w.shape[0] == 1:
            # Binary linear models score only the positive class: softmax([0, s]) == sigmoid(s).
            w = np.vstack([np.zeros_like(w[0]), w[0]])
            b = np.array([0.0, b[0]])
        coef[model.classes_] = w
        intercept[model.classes_] = b
        if len(present) < c:
            log.debug(
                "meta-learner fitted without classes %s; they get intercept %s",
                sorted(set(range(c)) - set(present.tolist())),
                ABSENT_CLASS_INTERCEPT,
            )
    return {
        "method": "stack",
        "learner": learner,
        "learner_params": {**LEARNERS[learner][1], **(learner_params or {})},
        "features": features,
        "eps": eps,
        "coef": coef.tolist(),
        "intercept": intercept.tolist(),
        "temperature": 1.0,
    }


def fit_stack(
    member_probs: np.ndarray,
    labels: np.ndarray,
    learner: str = "logistic",
    learner_params: dict[str, Any] | None = None,
    features: str = "log",
    calibrate: bool = False,
    inner_folds: int = 5,
    seed: int = 0,
    eps: float = EPS,
) -> dict[str, Any]:
    """Meta-learner on all given rows; with ``calibrate``, ``T`` from inner out-of-fold scores."""
    mp = as_member_probs(member_probs)
    labels = np.asarray(labels, dtype=np.int64)
    spec = fit_meta(mp, labels, learner, learner_params, features, eps)
    if calibrate:

        def fit(p, y):
            return fit_meta(p, y, learner, learner_params, features, eps)

        folds = make_folds(labels, inner_folds, seed)
        oof_z = np.zeros((len(labels), mp.shape[2]))
        for tr, te in folds:
            oof_z[te] = logits(fit(mp[:, tr], labels[tr]), mp[:, te])
        spec["temperature"] = fit_temperature(oof_z, labels)
        spec["temperature_fit"] = f"out-of-fold meta-learner scores, {inner_folds}-fold (seed {seed})"
    return spec


def stack_oof(member_probs: np.ndarray, labels: np.ndarray, folds: list[Fold], **fit_kwargs: Any) -> np.ndarray:
    """Out-of-fold stacking probabilities on the fit rows (what gets scored)."""
    return cross_fit(lambda p, y: fit_stack(p, y, **fit_kwargs), member_probs, labels, folds)
