"""Evidence for comparison tables: bootstrap confidence intervals and the exact McNemar test.

Why: on 1,710 val images one accuracy point is 17 images; a table of single numbers cannot
say whether an ensemble beats its best member. Every row gets a 95% percentile-bootstrap
interval of its accuracy, and every row is compared with the reference (the best member) on
the *same images* by the exact McNemar test: only the discordant pairs matter — ``b`` images
the reference gets right and the row gets wrong, ``c`` the other way — and under the null
``c ~ Binomial(b + c, 1/2)`` (``scipy.stats.binomtest``, two-sided).

Where the errors sit (:func:`confused_pairs`) says what bounds a combiner: members that err at the
same class boundary share their hard images, and no vote or stacker can fix an image every member gets
wrong.

The bootstrap is vectorised (one ``(B, N)`` index draw from a fixed-seed generator), and the
same resamples serve every row, so rows are comparable. The paired difference to the
reference gets its own interval from those resamples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest

from zoo.errors import ZooError

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


def _predicted(pred: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted class per image, labels)``; ``pred`` is probabilities ``(N, C)`` or class indices ``(N,)``."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.ndim == 2:  # probabilities
        pred = pred.argmax(axis=1)
    if pred.shape != labels.shape or labels.ndim != 1 or len(labels) == 0:
        raise ZooError(f"predictions {pred.shape} and labels {labels.shape} do not match")
    return pred, labels


def _correct(pred: Any, labels: Any) -> np.ndarray:
    pred, labels = _predicted(pred, labels)
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


def confused_pairs(pred: Any, labels: Any, class_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A model's errors grouped by the unordered pair of classes they confuse, most frequent first.

    ``pred``: probabilities ``(N, C)`` or class indices ``(N,)``. Returns ``errors`` (how many), ``pairs``
    (each ``{"pair": [a, b], "count", "a_as_b", "b_as_a"}`` with ``a`` before ``b`` in ``class_names``;
    ``a_as_b`` = images of ``a`` predicted ``b``; ties by class order) and ``by_class`` (per class name,
    the errors it takes part in, as true or predicted class).
    """
    pred, labels = _predicted(pred, labels)
    correct = pred == labels
    names = list(class_names)
    if max(int(pred.max()), int(labels.max())) >= len(names) or min(int(pred.min()), int(labels.min())) < 0:
        raise ZooError(f"class indices outside the {len(names)} class names")
    counts = np.zeros((len(names), len(names)), dtype=np.int64)  # [true, predicted]
    np.add.at(counts, (labels[~correct], pred[~correct]), 1)
    pairs = [
        {
            "pair": [names[a], names[b]],
            "count": int(counts[a, b] + counts[b, a]),
            "a_as_b": int(counts[a, b]),
            "b_as_a": int(counts[b, a]),
        }
        for a in range(len(names))
        for b in range(a + 1, len(names))
        if counts[a, b] + counts[b, a]
    ]
    pairs.sort(key=lambda r: -r["count"])  # stable: equal counts keep the class order
    involved = counts.sum(axis=0) + counts.sum(axis=1)
    return {
        "errors": int((~correct).sum()),
        "pairs": pairs,
        "by_class": {n: int(involved[i]) for i, n in enumerate(names)},
    }
