"""Weighted soft voting: ``p = Σ_m w_m p_m`` with ``w ≥ 0, Σ w = 1``.

Weights are either given or fitted by minimising the log-loss of the averaged probabilities
on the fit rows (scipy SLSQP on the simplex, analytic gradient). The objective only needs each
member's probability of the true class, so the fit is cheap even for thousands of rows. With
``calibrate`` a temperature is then fitted on the same rows (one more scalar; the weights have
only M−1 degrees of freedom, so in-sample fitting overfits negligibly — and the reported
scores are cross-fitted anyway, see :mod:`ensemble.cv`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ensemble.calibration import fit_temperature
from ensemble.combine import EPS, as_member_probs, logits
from ensemble.robust import choose_under_floor
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


FLOOR_GRID_STEPS = 8  # the clean-floor fit searches weights in multiples of 1/8


def simplex_grid(m: int, steps: int) -> np.ndarray:
    """Every weight vector over ``m`` members with entries in multiples of ``1/steps`` (sum 1)."""
    if m == 1:
        return np.ones((1, 1))
    rows = [np.array(c) for c in itertools.product(range(steps + 1), repeat=m - 1) if sum(c) <= steps]
    return np.stack([np.append(c, steps - c.sum()) for c in rows]).astype(np.float64) / steps


def fit_weights_floor(
    member_probs: np.ndarray, labels: np.ndarray, copies: int, floor: float, steps: int = FLOOR_GRID_STEPS
) -> np.ndarray:
    """Simplex weights with the best accuracy on the shifted rows among those keeping ``floor`` clean accuracy.

    Why not log-loss: on clean plus shifted rows the log-loss optimum of ``pbc-cpu``'s members kept
    97.1% clean, while weights chosen by accuracy under a 98% clean floor kept 98.2% clean *and* were
    more accurate shifted on held-out images (``benchmarks/results/vote_frontier_pbc_cpu.md``).

    Rows follow :func:`ensemble.robust.extend_fit_rows`: ``copies`` blocks of equal length, the clean
    block first (cross-fitting keeps that layout for every fold). The search is a grid on the simplex
    (multiples of ``1/steps``); when no weights reach the floor, the most accurate clean weights win.
    """
    mp = as_member_probs(member_probs)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels) // copies
    if copies < 2 or n * copies != len(labels):
        raise ZooError(f"a clean floor needs clean + shifted rows in {copies} equal blocks, got {len(labels)} rows")
    grid = simplex_grid(mp.shape[0], steps)
    clean, shifted = np.empty(len(grid)), np.empty(len(grid))
    for i in range(0, len(grid), 32):  # chunks bound the (W, rows, classes) intermediate
        right = np.einsum("wm,mnc->wnc", grid[i : i + 32], mp).argmax(-1) == labels
        clean[i : i + 32], shifted[i : i + 32] = right[:, :n].mean(1), right[:, n:].mean(1)
    return grid[choose_under_floor(clean, shifted, floor)]


def vote_spec(weights: Sequence[float], temperature: float = 1.0, eps: float = EPS) -> dict[str, Any]:
    return {"method": "vote", "weights": [float(x) for x in weights], "temperature": float(temperature), "eps": eps}


def fit_vote(
    member_probs: np.ndarray,
    labels: np.ndarray,
    weights: Sequence[float] | None = None,
    calibrate: bool = False,
    eps: float = EPS,
    clean_floor: float | None = None,
    copies: int = 1,
) -> dict[str, Any]:
    """A vote spec: given (normalised) or fitted weights, and a fitted temperature if ``calibrate``.

    ``clean_floor`` (with ``copies`` blocks of clean then shifted rows): weights by accuracy under
    that clean floor (:func:`fit_weights_floor`) instead of the log-loss fit.
    """
    mp = as_member_probs(member_probs)
    if weights is not None:
        w = normalise_weights(weights, mp.shape[0])
    elif clean_floor is not None:
        w = fit_weights_floor(mp, labels, copies, clean_floor)
    else:
        w = fit_weights(mp, labels, eps)
    spec = vote_spec(w, 1.0, eps)
    if calibrate:
        spec["temperature"] = fit_temperature(logits(spec, mp), labels)
    return spec
