"""The data section: counts per class and split, a montage, curation findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.report.render import Section
from zoo.report.sections.reading import (
    card,
    figures_folder,
    members,
    read_json,
    run_dataset,
)

MONTAGE_PER_CLASS = 8


def data(layout) -> Section:
    s = Section(
        "data", "Data", "Class counts per split, a few training images of every class, and what curation found."
    )
    counts, classes = None, None
    for _, folder in members(layout):
        c = card(folder)
        if c and isinstance(c.get("data", {}).get("counts"), dict):
            counts, classes = c["data"]["counts"], c["classes"]
            break
    dataset, why = run_dataset(layout)
    if counts is None and dataset is not None:
        summary = dataset.summary()
        counts, classes = summary.get("counts"), list(dataset.class_names)
    source = layout.cfg.data.source
    s.text(f"Source: {source}; members at {layout.cfg.sizes_text()}.")
    if counts and classes:
        splits = list(counts)
        rows = [
            [c, *[str(counts[sp][i]) for sp in splits], str(sum(counts[sp][i] for sp in splits))]
            for i, c in enumerate(classes)
        ]
        rows.append(["total", *[str(sum(counts[sp])) for sp in splits], str(sum(sum(counts[sp]) for sp in splits))])
        s.table(["class", *splits, "all"], rows, "images per class and split")
    else:
        s.missing(f"Class counts: no member card yet and the data could not be loaded ({why}).")
    if dataset is not None:
        path = _montage(layout, dataset)
        s.figure(path, f"{MONTAGE_PER_CLASS} random training images per class (one row per class)", "xl")
    else:
        s.missing(f"Sample images: the data could not be loaded ({why}).")
    _curation(layout, s)
    return s


def _curation(layout, s: Section) -> None:
    found = False
    for folder in _curation_folders(layout):
        rep = read_json(folder / "report.json")
        if not isinstance(rep, dict) or not isinstance(rep.get("summary"), dict):
            continue
        found = True
        s.heading(f"Curation findings ({folder})")
        s.table(["finding", "count"], [[k.replace("_", " "), str(v)] for k, v in rep["summary"].items()])
        s.figure(folder / "flagged.png", "flagged images (duplicates, outliers, unreadable files)", "xl")
    if not found:
        s.missing(
            "Curation findings: none recorded for this run. Run `zoo data inspect --data DATA --out "
            f"{layout.curation_dir()}` to add them (duplicates, leakage across splits, outliers)."
        )


def _curation_folders(layout) -> list[Path]:
    out = [Path(layout.curation_dir())]
    src = Path(layout.cfg.data.source)
    if src.name == "data" and src.is_dir():  # a cleaned copy from `zoo data clean --out X`: X/report.json
        out.append(src.parent)
    return out


def _montage(layout, dataset) -> Path:
    from zoo.curate.report import montage

    part = dataset.split("train")
    rng = np.random.default_rng(0)
    rows = []
    for k, cls in enumerate(dataset.class_names):
        idx = np.flatnonzero(part.labels == k)
        pick = rng.choice(idx, size=min(MONTAGE_PER_CLASS, len(idx)), replace=False) if len(idx) else []
        rows.append((cls, [(part.images[i], "") for i in pick]))
    return montage(figures_folder(layout) / "montage.png", rows, cell=1.1)
