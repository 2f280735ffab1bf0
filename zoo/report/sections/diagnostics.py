"""Where the models fail: confusion matrices, reliability diagrams and the most confident mistakes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.report.render import Section, pct
from zoo.report.sections.reading import (
    artifacts,
    card,
    ensembles,
    figures_folder,
    members,
    oof,
    report_split,
    run_dataset,
    stored_probs,
)

GALLERY_SIZE = 12


def confusion(layout) -> Section:
    split = report_split(layout)
    s = Section("confusion", "Confusion matrices", f"Rows: true class, columns: predicted class, on the {split} split.")
    _error_table(s, layout, split)
    for name, folder in artifacts(layout):
        png = folder / "eval" / split / "confusion_matrix.png"
        if not png.is_file():
            png = _generated(layout, folder, name, split, "confusion")
        if png is None or not s.figure(png, name, "m"):
            s.missing(f"{name}: no {split} predictions stored yet.")
    return s


def _error_table(s: Section, layout, split: str) -> None:
    """Every model's errors by the pair of classes it confuses, side by side (:mod:`zoo.confusions`)."""
    from zoo.confusions import confused_pairs, error_summary, top_pairs

    found = {}
    for name, folder in artifacts(layout):
        c, stored = card(folder), stored_probs(folder, split)
        if c is not None and stored is not None:
            found[name] = confused_pairs(*stored, c["classes"])
    if not found:
        return
    e = error_summary(found)
    rows = [
        [
            name,
            str(r["errors"]),
            str(r["with_class"]),
            top_pairs(r),
        ]
        for name, r in e["rows"].items()
    ]
    s.table(
        ["model", "errors", f"with {e['class']}", "most confused pairs: a ↔ b count (a → b / b → a)"],
        rows,
        f"Where the errors are on {split}: {e['class']} takes part in {100 * e['class_share']:.0f}% of all these "
        "models' errors together, as the true or the predicted class",
    )


def reliability(layout) -> Section:
    split = report_split(layout)
    s = Section(
        "reliability",
        "Reliability diagrams",
        f"Does a predicted 90% mean right 90% of the time? Accuracy per "
        f"confidence bin on the {split} split (perfect calibration lies on the diagonal); ECE in each title.",
    )
    for name, folder in artifacts(layout):
        png = folder / "eval" / split / "reliability.png"
        if not png.is_file():
            png = folder / "plots" / f"reliability_{split}.png"
        if not png.is_file():
            png = _generated(layout, folder, name, split, "reliability")
        if png is None or not s.figure(png, name, "m"):
            s.missing(f"{name}: no {split} predictions stored yet.")
    return s


def _generated(layout, folder: Path, name: str, split: str, what: str) -> Path | None:
    """A confusion matrix or reliability diagram drawn from stored probabilities (ensembles keep no eval/ plots)."""
    from zoo import plots

    stored = stored_probs(folder, split)
    c = card(folder)
    if stored is None or c is None:
        return None
    probs, labels = stored
    path = figures_folder(layout) / f"{what}_{folder.name}_{split}.png"
    title = f"{name} · {split}" + (" (out-of-fold)" if oof(folder, split) else "")
    if what == "confusion":
        from sklearn.metrics import confusion_matrix

        m = confusion_matrix(labels, probs.argmax(1), labels=list(range(len(c["classes"]))))
        return plots.confusion_matrix(path, m, c["classes"], title)
    return plots.reliability_diagram(path, labels, probs, title)


def gallery(layout, explainer_for: Callable[[Path], Any] | None) -> Section:
    split = report_split(layout)
    s = Section(
        "mistakes",
        "Most confident mistakes",
        f"Up to {GALLERY_SIZE} {split} images the headline model got wrong "
        "with the highest confidence, with its Grad-CAM: where it looked when it decided. Label noise and "
        "look-alike classes show up here first.",
    )
    name, folder = _headline(layout)
    if folder is None:
        s.missing("No complete model with stored predictions yet.")
        return s
    stored = stored_probs(folder, split)
    size = int(((card(folder) or {}).get("input") or {}).get("image_size") or layout.cfg.data.image_size)
    dataset, why = run_dataset(layout, size)  # the images the model saw: members may train at their own size
    if stored is None or dataset is None:
        s.missing(
            f"{name}: "
            + ("no stored predictions on " + split if stored is None else f"data not available ({why})")
            + "."
        )
        return s
    probs, labels = stored
    part = dataset.split(split)
    if len(part.labels) != len(labels) or not np.array_equal(part.labels, labels):
        s.missing(
            f"{name}: its stored {split} predictions do not match the data's {split} split (data changed since?)."
        )
        return s
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    if len(wrong) == 0:
        s.text(f"{name} made no mistakes on the {len(labels)} {split} images.")
        return s
    idx = wrong[np.argsort(-probs[wrong, pred[wrong]])][:GALLERY_SIZE]
    s.text(
        f"{name}: {len(wrong)} of {len(labels)} {split} images wrong ({pct(len(wrong) / len(labels))}); showing "
        f"the {len(idx)} most confident."
    )
    classes = list(dataset.class_names)
    heat, method = None, "Grad-CAM"
    if explainer_for is not None:
        try:
            explainer = explainer_for(folder)
            _, heat = explainer.explain(part.images[idx], target=pred[idx])
            method = explainer.method
        except ZooError as exc:
            s.missing(f"Grad-CAM not available for {name}: {exc}")
    else:
        s.missing("Grad-CAM not available (no explainer for this model).")
    from zoo.explain import explanation_figure

    out = figures_folder(layout)
    for rank, i in enumerate(idx):
        title = f"true {classes[labels[i]]} → {classes[pred[i]]} ({probs[i, pred[i]]:.0%})"
        h = heat[rank] if heat is not None else np.zeros(part.images.shape[1:3], np.float32)
        path = explanation_figure(
            out / f"mistake_{rank:02d}.png", part.images[i], h, title, method if heat is not None else "no heat map"
        )
        s.figure(path, f"#{i}: true {classes[labels[i]]}, predicted {classes[pred[i]]} at {probs[i, pred[i]]:.1%}", "g")
    return s


def _headline(layout) -> tuple[str, Path | None]:
    """The model the gallery explains: the distillation teacher ensemble, else any ensemble, else the best member."""
    split = report_split(layout)
    ens = ensembles(layout)
    teacher = [(n, f) for n, f in ens if f.name == layout.cfg.distill.teacher]
    for name, folder in teacher + ens:
        if card(folder) is not None and stored_probs(folder, split) is not None:
            return name, folder
    best: tuple[float, str, Path | None] = (-1.0, "", None)
    for name, folder in members(layout):
        c = card(folder)
        acc = (c or {}).get("metrics", {}).get("val", {}).get("accuracy")
        if acc is not None and stored_probs(folder, split) is not None and acc > best[0]:
            best = (acc, name, folder)
    return best[1], best[2]
