"""Scores used to compare members and ensembles: accuracy, macro F1, NLL, ECE.

Delegates to :mod:`zoo.evaluate` so an ensemble is scored by exactly the code that scores
members (same clipping for NLL, same 15-bin top-label ECE: ``zoo.evaluate.expected_calibration_error``,
``(labels, probs)`` like scikit-learn; the bins are ``zoo.evaluate.reliability_bins``).
"""

from __future__ import annotations

import numpy as np

from zoo.errors import ZooError
from zoo.evaluate import compute_metrics, headline

HEADLINE = ("n", "accuracy", "balanced_accuracy", "macro_f1", "nll", "ece")


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ZooError(f"probabilities {probs.shape} and labels {labels.shape} do not match")
    return probs, labels


def scores(probs: np.ndarray, labels: np.ndarray, class_names: list[str] | None = None) -> dict[str, float]:
    """``{n, accuracy, balanced_accuracy, macro_f1, nll, ece}`` of ``(N, C)`` probabilities."""
    probs, labels = _check(probs, labels)
    names = class_names or [str(i) for i in range(probs.shape[1])]
    m = headline(compute_metrics(labels, probs, names))
    return {k: m[k] for k in HEADLINE}
