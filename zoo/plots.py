"""PNG plots people would rather look at than read (matplotlib, headless Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from zoo.artifacts import atomic_path


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically and release it (every zoo plot goes through here)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def confusion_matrix(path, matrix, class_names, title: str = "") -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    matrix = np.asarray(matrix)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n))
    ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
        ax=ax, colorbar=False, xticks_rotation=45, cmap="Blues"
    )
    ax.set_title(title)
    return save_figure(fig, path)


def reliability_diagram(path, labels, probs, title: str = "", bins: int = 15) -> Path:
    from zoo.evaluate import expected_calibration_error, reliability_bins

    b = reliability_bins(labels, probs, bins)
    edges, acc, count = b["edges"], b["accuracy"], b["count"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    centers = (edges[:-1] + edges[1:]) / 2
    ax.bar(centers, np.nan_to_num(acc), width=1 / bins, edgecolor="k", alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax2 = ax.twinx()
    ax2.plot(centers, count / max(1, count.sum()), "o-", color="tab:orange", ms=3, label="fraction of samples")
    ax2.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}\nECE = {expected_calibration_error(labels, probs, bins):.3%}")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def training_curves(path, rows: list[dict]) -> Path:
    """Loss and accuracy per epoch, train vs val, phases shaded."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [r["epoch"] for r in rows]
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [r.get(key) for r in rows], label=f"train {key}")
        ax.plot(epochs, [r.get(f"val_{key}") for r in rows], label=f"val {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    axes[2].plot(epochs, [r.get("learning_rate") for r in rows])
    axes[2].set_title("learning rate")
    axes[2].set_xlabel("epoch")
    phases = [r.get("phase") for r in rows]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            for ax in axes:
                ax.axvline(epochs[i] - 0.5, color="gray", ls=":")
    return save_figure(fig, path)


def comparison_bars(path, rows: list[dict], splits: list[str]) -> Path:
    """Accuracy per model and split, side by side; a model without a score for a split gets no bar (not 0)."""
    names = [r["name"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) * max(1, len(splits)) / 2 + 2), 4.2))
    width = 0.8 / max(1, len(splits))
    x = np.arange(len(names))
    for i, s in enumerate(splits):
        # A model not scored on a split gets no bar (not a 0.000 bar that reads as 0% accuracy).
        vals = [(r.get(s) or {}).get("accuracy") for r in rows]
        keep = [j for j, v in enumerate(vals) if v is not None]
        bars = ax.bar(x[keep] + i * width, [vals[j] for j in keep], width, label=s, color=f"C{i}")
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x + width * (len(splits) - 1) / 2, names, rotation=20, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.12)
    ax.legend(fontsize=8, ncol=len(splits), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return save_figure(fig, path)
