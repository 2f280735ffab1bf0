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

Model selection is nested the same way (:func:`select_candidate`): the regularisation strength
and, for a robust fit, the weight of the shifted rows are chosen on inner out-of-fold scores of
the rows a learner is given, so the outer out-of-fold score of the whole procedure stays honest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from threadpoolctl import threadpool_limits

from ensemble.calibration import fit_temperature
from ensemble.combine import EPS, FEATURES, as_member_probs, logits, stack_features
from ensemble.cv import Fold, cross_fit, make_folds, replicate_folds
from ensemble.robust import choose_under_floor
from zoo.errors import ZooError

log = logging.getLogger(__name__)

LEARNERS = {
    # name: (class, default params) — linear models whose decision function is coef·x + intercept.
    # newton-cholesky: exact second-order steps, converges in a handful of iterations on M*C features.
    "logistic": (LogisticRegression, {"C": 1.0, "solver": "newton-cholesky", "max_iter": 500}),
    "ridge": (RidgeClassifier, {"alpha": 1.0}),
}
# The regularisation each learner's selection searches (a decade grid holding the default), unless the
# caller fixes that parameter.
REGULARISATION_GRID = {"logistic": ("C", (0.01, 0.1, 1.0)), "ridge": ("alpha", (0.1, 1.0, 10.0))}
# Weights of the shifted rows relative to clean rows that a robust fit under a clean floor searches:
# with all rows weighted alike the stack kept only 98.30% clean on pbc-cpu (pbc_cpu_stack_robust.md).
SHIFT_WEIGHT_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
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
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit the meta-learner on these rows (weighted by ``sample_weight``); return the stack spec (``temperature`` 1)."""
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
            model.fit(x, labels, sample_weight=sample_weight)
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


def candidates(
    learner: str, learner_params: dict[str, Any] | None, select: bool, copies: int, clean_floor: float | None
) -> list[dict[str, float]]:
    """What the selection searches: the learner's regularisation grid (unless ``learner_params`` fixes it)
    crossed with the shifted rows' weight (searched only under a clean floor; else 1, or none without copies).

    Under a clean floor the regularisation is always searched: on pbc-cpu's members, floors of 98.5-99% with
    C chosen as well kept as much clean accuracy or more at 1.4-3.9 points more shifted accuracy than with C
    fixed at 1 (nested out-of-fold, ``benchmarks/results/stack_frontier_pbc_cpu.md``)."""
    floored = copies > 1 and clean_floor is not None
    name, grid = REGULARISATION_GRID[learner]
    values = grid if (select or floored) and name not in (learner_params or {}) else (None,)
    weights = SHIFT_WEIGHT_GRID if floored else (1.0 if copies > 1 else 0.0,)
    return [{**({name: v} if v is not None else {}), "shift_weight": float(w)} for v in values for w in weights]


def row_weights(n_rows: int, copies: int, shift_weight: float) -> np.ndarray:
    """1 for the clean block (the first ``n_rows / copies`` rows), ``shift_weight`` for the shifted copies."""
    w = np.full(n_rows, float(shift_weight))
    w[: n_rows // copies] = 1.0
    return w


def _fit_candidate(mp, labels, cand, copies, learner, learner_params, features, eps) -> dict[str, Any]:
    params = {**(learner_params or {}), **{k: v for k, v in cand.items() if k != "shift_weight"}}
    w = row_weights(len(labels), copies, cand["shift_weight"])
    used = w > 0  # zero-weight rows change nothing; leaving them out keeps the fit small
    return fit_meta(mp[:, used], labels[used], learner, params, features, eps, None if w[used].min() == 1 else w[used])


def select_candidate(
    mp: np.ndarray,
    labels: np.ndarray,
    cands: Sequence[dict[str, float]],
    copies: int,
    clean_floor: float | None,
    fit,
    inner_folds: int,
    seed: int,
) -> tuple[int, list[dict[str, Any]], np.ndarray]:
    """Score each candidate by inner ``k``-fold out-of-fold predictions; return (chosen index, table, its OOF logits).

    Rows are ``copies`` blocks (clean first, :func:`ensemble.robust.extend_fit_rows`); inner folds keep an
    image's copies together. Rule: without a floor, the best accuracy on the rows the fit uses (ties: lower
    clean NLL); with ``clean_floor``, the best shifted accuracy among candidates whose clean out-of-fold
    accuracy reaches it (ties: higher clean accuracy), else the best clean accuracy — the vote's rule
    (:func:`ensemble.voting.fit_weights_floor`), here on inner out-of-fold scores instead of in-sample ones.
    """
    n = len(labels) // copies
    folds = replicate_folds(make_folds(labels[:n], inner_folds, seed), n, copies)
    table, oof = [], []
    for cand in cands:
        z = np.zeros((len(labels), mp.shape[2]))
        for tr, te in folds:
            z[te] = logits(fit(mp[:, tr], labels[tr], cand), mp[:, te])
        right = z.argmax(1) == labels
        lp = log_softmax(z[:n], axis=1)
        used = row_weights(len(labels), copies, cand["shift_weight"]) > 0
        table.append(
            {
                **cand,
                "clean_accuracy": float(right[:n].mean()),
                "shifted_accuracy": float(right[n:].mean()) if copies > 1 else None,
                "fit_rows_accuracy": float(right[used].mean()),
                "clean_nll": float(-lp[np.arange(n), labels[:n]].mean()),
            }
        )
        oof.append(z)
    if clean_floor is None:
        key = [(r["fit_rows_accuracy"], -r["clean_nll"]) for r in table]
        best = max(range(len(table)), key=key.__getitem__)
    else:
        best = choose_under_floor(
            [r["clean_accuracy"] for r in table], [r["shifted_accuracy"] for r in table], clean_floor
        )
    return best, table, oof[best]


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
    select: bool = False,
    copies: int = 1,
    clean_floor: float | None = None,
) -> dict[str, Any]:
    """Meta-learner on all given rows; with ``calibrate``, ``T`` from inner out-of-fold scores.

    ``select``: choose the learner's regularisation from :data:`REGULARISATION_GRID` on inner out-of-fold
    scores. ``copies`` > 1: the rows are a clean block then shifted copies (a robust fit); with
    ``clean_floor`` the shifted rows' weight is chosen too (:func:`select_candidate`). The chosen
    parameters go into ``learner_params``/``shift_weight``; the scored table into ``selection``.
    """
    mp = as_member_probs(member_probs)
    labels = np.asarray(labels, dtype=np.int64)
    if copies < 1 or len(labels) % copies:
        raise ZooError(f"{len(labels)} rows do not split into {copies} equal blocks (clean + shifted copies)")

    def fit(p, y, cand):
        return _fit_candidate(p, y, cand, copies, learner, learner_params, features, eps)

    cands = candidates(learner, learner_params, select, copies, clean_floor)
    chosen, table, oof_z = 0, None, None
    if len(cands) > 1 or calibrate:
        chosen, table, oof_z = select_candidate(mp, labels, cands, copies, clean_floor, fit, inner_folds, seed)
    cand = cands[chosen]
    spec = fit(mp, labels, cand)
    if copies > 1:
        spec["shift_weight"] = cand["shift_weight"]
    if len(cands) > 1:
        spec["selection"] = {
            "protocol": f"inner {inner_folds}-fold out-of-fold scores of the rows given (seed {seed})",
            "rule": f"best shifted accuracy with clean accuracy >= {clean_floor} (else best clean accuracy)"
            if clean_floor is not None
            else "best accuracy on the fitted rows (ties: lower clean NLL)",
            "candidates": table,
            "chosen": cand,
        }
    if calibrate:  # T on every row the learner fitted (shifted rows too when their weight is above 0), unweighted
        used = row_weights(len(labels), copies, cand["shift_weight"]) > 0
        spec["temperature"] = fit_temperature(oof_z[used], labels[used])
        spec["temperature_fit"] = f"out-of-fold meta-learner scores, {inner_folds}-fold (seed {seed})"
    return spec


def stack_oof(member_probs: np.ndarray, labels: np.ndarray, folds: list[Fold], **fit_kwargs: Any) -> np.ndarray:
    """Out-of-fold stacking probabilities on the fit rows (what gets scored)."""
    return cross_fit(lambda p, y: fit_stack(p, y, **fit_kwargs), member_probs, labels, folds)
