"""The report's first section: every complete model of the run on each split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.artifacts import parameter_count
from zoo.report.render import Section, count, pct
from zoo.report.sections.reading import (
    artifacts,
    card,
    ensemble_parameters,
)


def overview(layout) -> Section:
    s = Section(
        "overview",
        "Results at a glance",
        "Every complete model of this run on each split; ensembles and the student are fitted or trained "
        "on train/val only, so the test split is held out for all of them.",
    )
    rows = []
    splits: list[str] = []
    for name, folder in artifacts(layout):
        c = card(folder)
        if c is None:
            continue
        metrics = {
            k: v
            for k, v in c.get("metrics", {}).items()
            if isinstance(v, dict) and "accuracy" in v and "in_sample" not in k
        }
        splits += [k for k in metrics if k not in splits]
        n_params = parameter_count(c)
        if c.get("kind") == "ensemble" and not n_params:
            n_params = ensemble_parameters(layout, folder)
        rows.append((name, c, metrics, n_params))
    splits.sort(key=lambda k: (k.split("-")[0] != "val", k.split("-")[0] != "test", k))
    if rows:
        s.table(
            ["model", "kind", "parameters", *[f"{sp} accuracy" for sp in splits], *[f"{sp} macro F1" for sp in splits]],
            [
                [
                    n,
                    c["kind"],
                    count(p),
                    *[_scored(m, sp, "accuracy") for sp in splits],
                    *[_scored(m, sp, "macro_f1") for sp in splits],
                ]
                for n, c, m, p in rows
            ],
            "—: not scored on that split"
            + (
                " (the stain/blur/noise copies of val are scored for members; every model's shift suite is under "
                "Clean vs shifted accuracy)"
                if any("shifted" in sp for sp in splits)
                else ""
            ),
        )
    else:
        s.missing("No complete model yet: the first training stage has not finished.")
    summary = Path(layout.report_dir()) / "summary.png"
    if not s.figure(summary, "accuracy per model and split (report/summary.png)", "l") and rows:
        s.missing("report/summary.png is written at the end of `zoo run`.")
    return s


def _scored(metrics: dict[str, Any], split: str, key: str) -> str:
    """A percentage cell, or — where the model was not scored on ``split``."""
    v = metrics.get(split, {}).get(key)
    return pct(v) if v is not None else "—"
