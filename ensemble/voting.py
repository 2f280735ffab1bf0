"""Weighted soft voting: ``p = Σ_m w_m p_m`` with ``w ≥ 0, Σ w = 1``.

Weights are either given or fitted by minimising the log-loss of the averaged probabilities
on the fit rows (scipy SLSQP on the simplex, analytic gradient). The objective only needs each
member's probability of the true class, so the fit is cheap even for thousands of rows. With
``calibrate`` a temperature is then fitted on the same rows (one more scalar; the weights have
only M−1 degrees of freedom, so in-sample fitting overfits negligibly — and the reported
scores are cross-fitted anyway, see :mod:`ensemble.cv`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ensemble.calibration import fit_temperature
from ensemble.combine import EPS, as_member_probs, logits
from zoo.errors import ZooError

log = logging.getLogger(__name__)


def normalise_weights(weights: Sequence[float], n_members: int) -> np.ndarray:
    """Given weights as a validated simplex vector (they are rescaled to sum to 1)."""
    w = np.asarray(list(weights), dtype=np.float64)
    if w.shape != (n_members,):
        raise ZooError(f"{len(w)} weights given for {n_members} members")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ZooError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
    return w / w.sum()


def fit_weights(member_probs: np.ndarray, labels: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Simplex weights minimising ``−mean log(Σ_m w_m p_m[y] + eps)`` (SLSQP)."""
    mp = as_member_probs(member_probs)
    labels = np.asarray(labels, dtype=np.int64)
    m = mp.shape[0]
    if m == 1:
        return np.ones(1)
    py = mp[:, np.arange(len(labels)), labels].T  # (N, M): each member's probability of the true class

    def objective(w):
        q = py @ w + eps
        return -np.mean(np.log(q)), -(py / q[:, None]).mean(axis=0)

    res = minimize(
        objective,
        np.full(m, 1.0 / m),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 500, "ftol": 1e-10},
    )
    if not res.success:
        log.warning("weight fit did not converge (%s); using its last iterate", res.message)
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def vote_spec(weights: Sequence[float], temperature: float = 1.0, eps: float = EPS) -> dict[str, Any]:
    return {"method": "vote", "weights": [float(x) for x in weights], "temperature": float(temperature), "eps": eps}


def fit_vote(
    member_probs: np.ndarray,
    labels: np.ndarray,
    weights: Sequence[float] | None = None,
    calibrate: bool = False,
    eps: float = EPS,
) -> dict[str, Any]:
    """A vote spec: given (normalised) or fitted weights, and a fitted temperature if ``calibrate``."""
    mp = as_member_probs(member_probs)
    w = normalise_weights(weights, mp.shape[0]) if weights is not None else fit_weights(mp, labels, eps)
    spec = vote_spec(w, 1.0, eps)
    if calibrate:
        spec["temperature"] = fit_temperature(logits(spec, mp), labels)
    return spec
