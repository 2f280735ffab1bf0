"""Score a predictor on the shift suite: accuracy, balanced error and ECE per family and severity.

:func:`evaluate_suite` runs any ``predict_fn(uint8 images) -> probabilities`` (a Keras run,
an ensemble, an ONNX export) on a stratified subsample of a split, clean and corrupted by each
(family, severity) cell, and returns a JSON-ready dict. :func:`summarise` then splits the
families into in-family (covered by the model's training augmentation) and out-of-family
and computes corruption errors:

- ``CE_f = Σ_s E_{f,s} / Σ_s E^ref_{f,s}`` with top-1 error ``E`` (ImageNet-C, Hendrycks &
  Dietterich 2019), normalised by a reference model scored on the same images; without a
  reference, ``CE_f`` is the unnormalised mean error over severities (and the result says so);
- ``mCE`` = mean of ``CE_f`` over families; ``mCE_out`` over out-of-family families only.

Leave-one-family-out is the protocol for robustness claims: a model is credited only on the
families it did not train on (``mean_out_of_family_accuracy``, ``mCE_out``); in-family numbers
are reported next to them, never mixed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.evaluate import balanced_accuracy, expected_calibration_error
from zoo.shift import FAMILIES, SEVERITIES, _seed, corrupt, resolve_families

log = logging.getLogger(__name__)

PROTOCOL = (
    "Each (family, severity) cell corrupts the same stratified subsample; every image gets one corruption of the "
    "family, drawn from the seed alone, so severities share directions. Out-of-family = families the model's "
    "training augmentation does not cover (leave-one-family-out); only those support a robustness claim."
)
DEFAULT_MAX_IMAGES = 600


def stratified_subset(labels: np.ndarray, max_images: int | None, seed: int = 0) -> np.ndarray:
    """Sorted row indices: at most ``max_images`` rows, each class in proportion (at least one if present)."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_images is None or max_images <= 0 or n <= max_images:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * max_images / n
    quota = np.maximum(np.floor(exact).astype(int), 1)
    for i in np.argsort(-(exact - np.floor(exact))):  # largest remainders first
        if quota.sum() >= max_images:
            break
        if quota[i] < counts[i]:
            quota[i] += 1
    while quota.sum() > max_images:  # the at-least-one rule overshot: trim the largest classes
        quota[np.argmax(quota)] -= 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def cell_metrics(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, float]:
    pred = probs.argmax(axis=1)
    present = np.unique(labels)
    return {
        "accuracy": float((pred == labels).mean()),
        "balanced_error": 1.0 - balanced_accuracy(labels, pred) if len(present) > 1 else float((pred != labels).mean()),
        "ece": expected_calibration_error(labels, probs),
    }


def evaluate_suite(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    families: str | Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    adapt: Callable[[np.ndarray], tuple[np.ndarray, float | None, np.ndarray | None]] | None = None,
) -> dict[str, Any]:
    """Clean and per-(family, severity) metrics of ``predict_fn`` on a stratified subsample; JSON-ready.

    ``adapt`` (e.g. :class:`zoo.magnification.MagnificationAdapter`) is a label-free, per-set
    test-time adaptation: it sees each acquisition on its own (the clean images; within a cell, the
    images of one corruption, as one lab's set would arrive) and returns the adapted images, what
    it measured (recorded per cell under ``adapt``) and ``predict_fn``'s probabilities for the adapted
    images when it already computed them (None: the suite predicts them), as
    :class:`zoo.magnification.Adapted` does.
    """
    fams = resolve_families(families)
    severities = [int(s) for s in severities]
    if not severities or any(not 1 <= s <= 5 for s in severities):
        raise ZooError(f"shift severities must be in 1..5, got {severities}")
    labels = np.asarray(labels, dtype=np.int64)
    idx = stratified_subset(labels, max_images, seed)
    x, y = np.asarray(images)[idx], labels[idx]
    if len(x) == 0:
        raise ZooError("the shift suite needs at least one image")
    c = len(class_names)
    t_corrupt = t_predict = 0.0

    def predict(batch: np.ndarray) -> np.ndarray:
        nonlocal t_predict
        t = time.time()
        p = np.asarray(predict_fn(batch), dtype=np.float64)
        t_predict += time.time() - t
        if p.shape != (len(batch), c):
            raise ZooError(f"predictor returned {p.shape}, expected ({len(batch)}, {c})")
        return p

    def adapted(batch: np.ndarray) -> tuple[np.ndarray, float | None]:
        """The adapted set's probabilities (the adapter's own when it has them) and its reading."""
        nonlocal t_adapt
        t = time.time()
        new, measured, probs = adapt(batch)
        t_adapt += time.time() - t
        if probs is None:
            probs = predict(new)
        elif np.shape(probs) != (len(batch), c):
            raise ZooError(
                f"the adapter returned probabilities of shape {np.shape(probs)}, expected ({len(batch)}, {c})"
            )
        return np.asarray(probs, dtype=np.float64), (None if measured is None else round(float(measured), 4))

    t_adapt = 0.0
    clean, clean_adapt = adapted(x) if adapt is not None else (predict(x), None)
    out: dict[str, Any] = {
        "suite": "zoo.shift",
        "protocol": PROTOCOL,
        "seed": int(seed),
        "severities": severities,
        "max_images": max_images,
        "n": len(x),
        "classes": list(class_names),
        "class_counts": np.bincount(y, minlength=c).tolist(),
        "clean": cell_metrics(y, clean, c),
        "families": {},
    }
    for fam in fams:
        cells, names = {}, FAMILIES[fam]
        pick = _seed(seed, fam).integers(
            0, len(names), len(x)
        )  # the corruption each image gets (as corrupt() draws it)
        for s in severities:
            t = time.time()
            xc = corrupt(x, fam, s, seed)
            t_corrupt += time.time() - t
            measured = {}
            if adapt is None:
                p = predict(xc)
            else:  # one acquisition at a time: the images of each corruption
                p = np.empty((len(xc), c))
                for j, n in enumerate(names):
                    rows = np.flatnonzero(pick == j)
                    if len(rows):
                        p[rows], measured[n] = adapted(xc[rows])
            cell = cell_metrics(y, p, c)
            if adapt is not None:
                cell["adapt"] = measured
            correct = p.argmax(1) == y
            cell["by_corruption"] = {
                n: float(correct[pick == j].mean()) for j, n in enumerate(names) if (pick == j).any()
            }
            cells[str(s)] = cell
        out["families"][fam] = {
            "corruptions": names,
            "severities": cells,
            "mean_accuracy": float(np.mean([v["accuracy"] for v in cells.values()])),
            "mean_error": float(np.mean([1 - v["accuracy"] for v in cells.values()])),
            "mean_balanced_error": float(np.mean([v["balanced_error"] for v in cells.values()])),
            "mean_ece": float(np.mean([v["ece"] for v in cells.values()])),
        }
        log.info(
            "shift suite %-12s accuracy by severity %s", fam, " ".join(f"{v['accuracy']:.3f}" for v in cells.values())
        )
    if adapt is not None:
        out["clean"]["adapt"] = clean_adapt
        out["adapt"] = adapt.to_dict() if hasattr(adapt, "to_dict") else {"method": repr(adapt)}
    out["seconds"] = {"corrupt": round(t_corrupt, 2), "predict": round(t_predict, 2), "adapt": round(t_adapt, 2)}
    return out


def split_families(trained: Sequence[str] | None, evaluated: Sequence[str]) -> tuple[list[str], list[str]]:
    """(in-family, out-of-family) among ``evaluated``; unknown training coverage counts nothing as in-family."""
    covered = set(trained or ())
    return [f for f in evaluated if f in covered], [f for f in evaluated if f not in covered]


def summarise(
    result: dict[str, Any],
    augment_families: Sequence[str] | None,
    reference: dict[str, Any] | None = None,
    reference_name: str | None = None,
) -> dict[str, Any]:
    """Add the in/out-of-family split, mean accuracies and (m)CE to an :func:`evaluate_suite` result (a copy)."""
    res = dict(result)
    fams = list(res["families"])
    inside, outside = split_families(augment_families, fams)
    res["augment_families"] = None if augment_families is None else sorted(augment_families)
    res["in_family"], res["out_of_family"] = inside, outside
    if augment_families is None:
        res["augment_families_note"] = (
            "the artifact does not record its training augmentation: every family counted out-of-family"
        )

    def mean_acc(group):
        return float(np.mean([res["families"][f]["mean_accuracy"] for f in group])) if group else None

    res["mean_in_family_accuracy"] = mean_acc(inside)
    res["mean_out_of_family_accuracy"] = mean_acc(outside)
    res["mean_shifted_accuracy"] = mean_acc(fams)
    ce = corruption_errors(res, reference)
    res["ce"] = ce
    res["ce_normalised"] = reference is not None
    res["ce_definition"] = (
        "CE_f = sum_s E_fs / sum_s E_ref_fs (top-1 error, ImageNet-C), reference: " + str(reference_name or "given")
        if reference is not None
        else "unnormalised: CE_f = mean over severities of the top-1 error (no reference model given)"
    )
    res["mce"] = float(np.mean(list(ce.values()))) if ce else None
    res["mce_out_of_family"] = float(np.mean([ce[f] for f in outside])) if outside else None
    res["mce_in_family"] = float(np.mean([ce[f] for f in inside])) if inside else None
    res["reference"] = reference_name if reference is not None else None
    return res


def corruption_errors(result: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, float]:
    """CE per family; normalised by ``reference`` (another evaluate_suite result on the same images) if given."""
    ce = {}
    for fam, r in result["families"].items():
        sev = list(r["severities"])
        err = sum(1 - r["severities"][s]["accuracy"] for s in sev)
        if reference is None:
            ce[fam] = err / len(sev)
            continue
        ref = reference.get("families", {}).get(fam)
        if ref is None or any(s not in ref["severities"] for s in sev):
            raise ZooError(
                f"the reference results lack family '{fam}' at severities {sev}; "
                "evaluate the reference with the same suite"
            )
        ref_err = sum(1 - ref["severities"][s]["accuracy"] for s in sev)
        ce[fam] = err / max(ref_err, 1e-6)
    return ce


def comparable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two results scored the same images the same way (seed, subsample, severities, data)."""
    keys = ("seed", "max_images", "n", "severities", "class_counts", "data")
    return all(a.get(k) == b.get(k) for k in keys)
