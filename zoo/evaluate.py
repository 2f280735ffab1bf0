"""Evaluation: scikit-learn metrics, calibration error and the plots people look at.

Metrics are computed from probabilities so every artifact kind (member, ensemble, student,
ONNX export) is scored by the same code. ECE (top-label, equal-width bins) is the one metric
scikit-learn lacks; it is a few lines here, shared with calibration.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from zoo.artifacts import read_card, update_card, write_json, write_probs
from zoo.errors import ZooError

log = logging.getLogger(__name__)
ECE_BINS = 15


def reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per equal-width bin of top-label confidence: ``edges`` (bins + 1), ``count``, mean ``confidence``, ``accuracy``.

    The one binning behind the ECE and every reliability diagram (members, ensembles, report), so a
    plotted gap is exactly what the ECE sums. Empty bins hold NaN confidence and accuracy.
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=conf, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": confidence, "accuracy": accuracy}


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: Σ_b |acc_b − conf_b| · n_b / n over equal-width confidence bins."""
    b = reliability_bins(labels, probs, bins)
    seen = b["count"] > 0
    return float(np.sum(np.abs(b["accuracy"][seen] - b["confidence"][seen]) * b["count"][seen]) / b["count"].sum())


def balanced_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's balanced accuracy).

    A lab's own set often holds only some of the classes, and a model may still predict the others:
    scikit-learn then warns that "y_pred contains classes not in y_true" on every call, though its
    value is the one wanted. That warning is silenced here and nowhere else.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(skm.balanced_accuracy_score(labels, pred))


def compute_metrics(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Headline and per-class metrics of probabilities ``(N, C)`` against integer ``labels``."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(labels), len(class_names)):
        raise ZooError(
            f"probabilities of shape {probs.shape} do not match {len(labels)} labels × {len(class_names)} classes"
        )
    probs = np.clip(probs, 1e-12, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    k = list(range(len(class_names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, pred, labels=k, zero_division=0)
    present = np.unique(labels)
    try:
        auc = (
            float(
                skm.roc_auc_score(
                    labels,
                    probs[:, present] / probs[:, present].sum(1, keepdims=True),
                    multi_class="ovr",
                    labels=present,
                )
            )
            if len(present) > 2
            else None
        )
    except ValueError:
        auc = None
    return {
        "n": int(len(labels)),
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "balanced_accuracy": balanced_accuracy(labels, pred),
        "macro_f1": float(skm.f1_score(labels, pred, labels=k, average="macro", zero_division=0)),
        "roc_auc_ovr": auc,
        "nll": float(skm.log_loss(labels, probs, labels=k)),
        "ece": expected_calibration_error(labels, probs),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": skm.confusion_matrix(labels, pred, labels=k).tolist(),
    }


def write_report(
    out_dir: str | os.PathLike, labels: np.ndarray, probs: np.ndarray, class_names: list[str], title: str
) -> dict[str, Any]:
    """metrics.json + confusion-matrix and reliability-diagram PNGs in ``out_dir``; returns the metrics."""
    from zoo import plots

    out_dir = Path(out_dir)
    result = compute_metrics(labels, probs, class_names)
    plots.confusion_matrix(out_dir / "confusion_matrix.png", result["confusion_matrix"], class_names, title)
    plots.reliability_diagram(out_dir / "reliability.png", labels, probs, title)
    write_json(out_dir / "metrics.json", result)
    return result


def headline(m: dict[str, Any]) -> dict[str, Any]:
    """The few numbers worth a table column."""
    return {k: m[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "nll", "ece") if k in m}


def score_split(
    folder: str | os.PathLike, model, split: str, part, class_names: list[str], title: str
) -> tuple[dict[str, Any], np.ndarray]:
    """Predict one split with a freshly trained model and store what later stages read.

    Writes ``probs/<split>.npy`` + ``probs/<split>_labels.npy`` (for ensembling) and
    ``eval/<split>/`` (metrics and plots) into the run folder; returns (headline metrics, probs).
    """
    folder = Path(folder)
    probs = predict_model(model, part.images)
    write_probs(folder, split, probs, part.labels)
    return headline(write_report(folder / "eval" / split, part.labels, probs, class_names, title)), probs


def _predict_adapted(folder: Path, card: dict[str, Any], images: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities after test-time BN adaptation on ``images`` themselves (the model file is untouched)."""
    if card["kind"] not in ("member", "student"):
        raise ZooError(
            f"--adapt-bn applies to member and student runs, not {card['kind']} folders (adapt each member instead)"
        )
    from zoo.adapt import adapt_batchnorm
    from zoo.runs import load_model

    model = adapt_batchnorm(load_model(folder, card), images, seed=seed)
    return predict_model(model, images)


def predict_model(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    out = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float32)


def data_description(folder: str | os.PathLike, card: dict[str, Any]) -> dict[str, Any]:
    """The card's data description (source, seed, …); an export's is completed from its source folder's card."""
    data = dict(card.get("data") or {})
    if card["kind"] == "export":
        src = Path((card.get("source") or {}).get("folder") or "")
        if str(src) not in ("", ".") and (src / "card.json").is_file():
            data = {**data, **(read_card(src, verify=False).get("data") or {})}
    return data


def evaluate(
    folder: str | os.PathLike,
    data: str | None = None,
    split: str = "val",
    *,
    shifted: float | None = None,
    seed: int = 0,
    dataset=None,
    adapt_bn: bool = False,
    adapt_scale: bool = False,
) -> dict[str, Any]:
    """Score a run, ensemble or export folder on ``split`` of ``data`` (default: the data it was trained on).

    ``shifted`` (a severity in 0..1) scores an augmented copy of the split instead, built by
    :func:`zoo.augment.shift.shifted_copy`, to estimate accuracy on images from another lab.
    ``adapt_bn`` first re-estimates the model's BatchNorm statistics on the (unlabelled) images it
    scores (:mod:`zoo.adapt`; member and student runs only), reported as ``<split>[-shifted]-adaptbn``.
    ``adapt_scale`` first measures the split's magnification as one set against the training images and
    resamples it back (:mod:`zoo.magnification`), reported as ``...-adaptscale`` with the reading.
    Results go to ``FOLDER/eval/<split>[-shifted]/`` and into the card's metrics.
    """
    from zoo.data import load_dataset
    from zoo.predictors import load_predictor  # members, students, and kinds their packages registered

    folder = Path(folder)
    card = read_card(folder)
    if dataset is None:
        recorded = data_description(folder, card)
        source = data or recorded.get("source")
        if not source:
            raise ZooError(f"{folder}: the card names no data source; pass --data")
        dataset = load_dataset(source, card["input"]["image_size"], seed=recorded.get("seed", seed))
    if list(dataset.class_names) != list(card["classes"]):
        raise ZooError(f"{folder}: model classes {card['classes']} differ from the data's {dataset.class_names}")
    part = dataset.split(split)
    images, name = part.images, split
    if shifted:
        from zoo.augment.shift import shifted_copy

        images, name = shifted_copy(images, seed=seed, severity=shifted), f"{split}-shifted"
    magnification = probs = predict = None
    if adapt_scale:
        from zoo.magnification import MagnificationAdapter

        predict = load_predictor(folder, card)  # loaded once: the adapter predicts the set at every reading
        adapter = MagnificationAdapter.from_dataset(dataset, predict)
        images, magnification, probs = adapter(images)  # probs: of these images, when a reading computed them
        name = f"{name}-adaptscale"
        log.info("%s: magnification read ×%s", name, "n/a" if magnification is None else f"{magnification:.3f}")
    if adapt_bn:
        probs, name = _predict_adapted(folder, card, images, seed), f"{name}-adaptbn"
    elif probs is None:
        probs = np.asarray((predict or load_predictor(folder, card))(images), dtype=np.float32)
    result = write_report(folder / "eval" / name, part.labels, probs, card["classes"], f"{card['name']} · {name}")
    if not shifted and not adapt_bn and not adapt_scale:
        write_probs(folder, split, probs, part.labels)
    metrics = dict(card.get("metrics", {}))
    metrics[name] = headline(result)
    if adapt_scale:
        result["magnification"] = metrics[name]["magnification"] = magnification
    update_card(folder, verify=False, metrics=metrics)  # verified on entry
    result["name"] = name  # the eval/ folder and card entry, e.g. test-shifted-adaptscale
    log.info(
        "%s on %s: accuracy %.4f, macro F1 %.4f, ECE %.4f",
        card["name"],
        name,
        result["accuracy"],
        result["macro_f1"],
        result["ece"],
    )
    return result
