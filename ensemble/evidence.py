"""Evidence for comparison tables: bootstrap confidence intervals and the exact McNemar test.

Why: on 1,710 val images one accuracy point is 17 images; a table of single numbers cannot
say whether an ensemble beats its best member. Every row gets a 95% percentile-bootstrap
interval of its accuracy, and every row is compared with the reference (the best member) on
the *same images* by the exact McNemar test: only the discordant pairs matter — ``b`` images
the reference gets right and the row gets wrong, ``c`` the other way — and under the null
``c ~ Binomial(b + c, 1/2)`` (``scipy.stats.binomtest``, two-sided).

The bootstrap is vectorised (one ``(B, N)`` index draw from a fixed-seed generator), and the
same resamples serve every row, so rows are comparable. The paired difference to the
reference gets its own interval from those resamples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest

from zoo.confusions import predicted_classes
from zoo.errors import ZooError

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


def _correct(pred: Any, labels: Any) -> np.ndarray:
    pred, labels = predicted_classes(pred, labels)
    return pred == labels


def bootstrap_indices(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``(resamples, n)`` row indices drawn with replacement (fixed seed: reproducible intervals)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(correct: np.ndarray, idx: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``correct`` (0/1 per image) over the resamples ``idx``."""
    means = np.asarray(correct, dtype=np.float64)[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def mcnemar_exact(reference_correct: np.ndarray, other_correct: np.ndarray) -> dict[str, float]:
    """Exact two-sided McNemar test on paired 0/1 outcomes: ``b`` (only reference right), ``c`` (only other right)."""
    a, o = np.asarray(reference_correct, bool), np.asarray(other_correct, bool)
    if a.shape != o.shape:
        raise ZooError(f"McNemar needs paired outcomes on the same images, got {a.shape} and {o.shape}")
    b, c = int((a & ~o).sum()), int((~a & o).sum())
    p = 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b_reference_only": b, "c_other_only": c, "p_value": p}


def compare_rows(
    predictions: dict[str, Any],
    labels: Any,
    reference: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Per row: accuracy, its bootstrap CI, and (vs ``reference``) the paired difference with CI and McNemar.

    ``predictions``: name -> probabilities ``(N, C)`` or class indices ``(N,)``, all on the same
    images in the same order. ``reference`` defaults to the most accurate row.
    """
    labels = np.asarray(labels)
    correct = {k: _correct(v, labels) for k, v in predictions.items()}
    if not correct:
        raise ZooError("nothing to compare")
    ref = reference or max(correct, key=lambda k: correct[k].mean())
    if ref not in correct:
        raise ZooError(f"reference '{ref}' is not among the rows {sorted(correct)}")
    idx = bootstrap_indices(len(labels), resamples, seed)
    out: dict[str, dict[str, Any]] = {}
    for name, ok in correct.items():
        lo, hi = bootstrap_ci(ok, idx, level)
        row: dict[str, Any] = {
            "accuracy": float(ok.mean()),
            "ci_low": lo,
            "ci_high": hi,
            "n": len(ok),
            "reference": ref,
        }
        diff = ok.astype(np.float64) - correct[ref].astype(np.float64)
        row["diff_vs_reference"] = float(diff.mean())
        row["diff_ci_low"], row["diff_ci_high"] = bootstrap_ci(diff, idx, level)
        row.update({f"mcnemar_{k}": v for k, v in mcnemar_exact(correct[ref], ok).items()})
        out[name] = row
    return out
