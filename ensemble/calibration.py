"""Temperature scaling (Guo et al. 2017) and reliability diagrams.

One scalar ``T`` rescales the logits, ``p = softmax(z / T)``: it changes confidence, never the
predicted class, so accuracy is untouched while NLL/ECE improve. It is fitted by minimising
the validation NLL over ``log T`` (scipy, bounded scalar search), which keeps ``T`` positive.
Members output probabilities, so their logits are ``log(p + eps)`` (softmax is shift
invariant, hence this equals the true logits up to a per-row constant).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from ensemble.combine import EPS
from zoo.errors import ZooError
from zoo.evaluate import expected_calibration_error, reliability_bins

log = logging.getLogger(__name__)

LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)``."""
    lp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-lp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in [0.05, 20] minimising the NLL of ``softmax(logits / T)`` on these rows."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ZooError(f"cannot fit a temperature on logits {z.shape} with labels {y.shape}")
    res = minimize_scalar(
        lambda lt: nll(z, y, float(np.exp(lt))), bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4}
    )
    t = float(np.exp(res.x))
    log.debug("temperature %.4f (NLL %.4f -> %.4f)", t, nll(z, y), res.fun)
    return t


def probs_to_logits(probs: np.ndarray, eps: float = EPS) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64) + eps)


def calibrate_probs(probs: np.ndarray, temperature: float, eps: float = EPS) -> np.ndarray:
    """``softmax(log(p + eps) / T)`` — the calibration step of a vote or a single member."""
    return np.exp(log_softmax(probs_to_logits(probs, eps) / temperature, axis=1))


def plot_reliability(path: str | Path, panels: Sequence[tuple[str, np.ndarray, np.ndarray]], n_bins: int = 15) -> Path:
    """Reliability diagrams side by side: one panel per ``(title, probs, labels)``, ECE in the title."""
    from zoo.plots import plt, save_figure  # headless Agg backend

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, probs, labels) in zip(axes[0], panels):
        b = reliability_bins(labels, probs, n_bins)
        centres = (b["edges"][:-1] + b["edges"][1:]) / 2
        width = 1.0 / n_bins
        have = b["count"] > 0
        ax.bar(
            centres[have],
            b["accuracy"][have],
            width=width * 0.95,
            color="#4C72B0",
            edgecolor="black",
            linewidth=0.4,
            label="accuracy",
        )
        acc, conf = b["accuracy"][have], b["confidence"][have]
        ax.bar(
            centres[have],
            np.abs(conf - acc),
            bottom=np.minimum(acc, conf),
            width=width * 0.95,
            color="#DD8452",
            alpha=0.5,
            edgecolor="#DD8452",
            linewidth=0.4,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ece = expected_calibration_error(
            np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64), n_bins
        )
        ax.set_title(f"{title}\nECE {100 * ece:.2f}%", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
