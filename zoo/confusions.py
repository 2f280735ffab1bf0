"""Where a model's errors are: the pairs of classes it confuses, and the class most errors share.

Why: a confusion matrix per model shows where one model errs; these say it across models in one table.
Members that err at the same class boundary share their hard images, and no vote or stacker can fix an image
every member gets wrong; on PBC the ``ig`` / ``neutrophil`` boundary (PBC's ``ig`` pools promyelocytes,
myelocytes and metamyelocytes, a series that grades into neutrophils) is that boundary for every model.
Used by ``ensemble.compare`` (``comparison.md``), the HTML report and ``benchmarks/pipeline_run.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from zoo.errors import ZooError


def predicted_classes(pred: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted class per image, labels)``; ``pred`` is probabilities ``(N, C)`` or class indices ``(N,)``."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.ndim == 2:  # probabilities
        pred = pred.argmax(axis=1)
    if pred.shape != labels.shape or labels.ndim != 1 or len(labels) == 0:
        raise ZooError(f"predictions {pred.shape} and labels {labels.shape} do not match")
    return pred, labels


def confused_pairs(pred: Any, labels: Any, class_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A model's errors grouped by the unordered pair of classes they confuse, most frequent first.

    ``pred``: probabilities ``(N, C)`` or class indices ``(N,)``. Returns ``errors`` (how many), ``pairs``
    (each ``{"pair": [a, b], "count", "a_as_b", "b_as_a"}`` with ``a`` before ``b`` in ``class_names``;
    ``a_as_b`` = images of ``a`` predicted ``b``; ties by class order) and ``by_class`` (per class name,
    the errors it takes part in, as true or predicted class).
    """
    pred, labels = predicted_classes(pred, labels)
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


def error_summary(confused: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Models' confused pairs side by side, with the class that takes part in most of their errors together.

    ``confused``: model name -> :func:`confused_pairs` result. Returns ``class`` (pooled over
    the models; the first of equals in class order), ``class_share`` (its share of all their errors) and
    ``rows`` (each result plus ``with_class``, the model's errors that class takes part in).
    """
    if not confused:
        raise ZooError("no models to summarise errors for")
    names = list(next(iter(confused.values()))["by_class"])
    pooled = {c: sum(r["by_class"][c] for r in confused.values()) for c in names}
    total = sum(r["errors"] for r in confused.values())
    top = max(names, key=lambda c: pooled[c])
    return {
        "class": top,
        "class_share": pooled[top] / total if total else 0.0,
        "rows": {n: {**r, "with_class": r["by_class"][top]} for n, r in confused.items()},
    }


def top_pairs(result: Mapping[str, Any], n: int = 3) -> str:
    """``"a ↔ b count (a → b / b → a); …"`` for a :func:`confused_pairs` result's ``n`` most confused pairs."""
    return "; ".join(
        f"{p['pair'][0]} ↔ {p['pair'][1]} {p['count']} ({p['a_as_b']} / {p['b_as_a']})" for p in result["pairs"][:n]
    )
