"""The training section: each member's and the student's curves and training options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.artifacts import parameter_count
from zoo.report.render import Section, count
from zoo.report.sections.reading import (
    complete,
    figures_folder,
    read_csv,
    trained,
)


def training(layout) -> Section:
    s = Section(
        "training",
        "Training curves",
        "Loss, accuracy and learning rate per epoch (train vs val); dotted lines mark a new training phase.",
    )
    rows = []
    for name, folder, c in complete(s, trained(layout)):
        t = c.get("training", {})
        rows.append(
            [
                name,
                c.get("member", ""),
                count(parameter_count(c)),
                str(t.get("epochs_run", "")),
                str(t.get("best_epoch", "")),
                f"{float(t['seconds']) / 60:.1f} min" if "seconds" in t else "",
                _augment(t),
            ]
        )
        png = folder / "plots" / "training_curves.png"
        if not png.is_file() and (folder / "history.csv").is_file():
            png = _curves_from_history(layout, name, folder / "history.csv")
        if not s.figure(png, name, "w"):
            s.missing(f"{name}: no training curves (no history.csv).")
    if rows:
        s.end_figures()
        s.blocks.insert(
            0,
            {
                "kind": "table",
                "columns": ["run", "member", "parameters", "epochs", "best epoch", "time", "augmentation"],
                "rows": rows,
                "numeric": [False, False, True, True, True, True, False],
                "caption": "",
            },
        )
    return s


def _augment(t: dict[str, Any]) -> str:
    """A run's augmentation as it was asked for: a preset by its name with its ops (``shift_mixed (flip_rot90,
    stain, …)``), not the expanded spec of every op's magnitudes."""
    a, asked = t.get("augment"), (t.get("config") or {}).get("augment")
    if isinstance(a, dict):
        spec, ops = a.get("spec"), a.get("policies")
        if isinstance(asked, str) and asked != spec and isinstance(ops, list) and ops:
            return f"{asked} ({', '.join(map(str, ops))})"
        return str(spec or a.get("name") or a.get("policy") or ", ".join(f"{k}" for k in list(a)[:4]))
    return "" if a is None else str(a)


def _curves_from_history(layout, name: str, path: Path) -> Path:
    from zoo import plots

    rows = []
    for r in read_csv(path):
        row: dict[str, Any] = {}
        for k, v in r.items():
            try:
                row[k] = float(v)
            except (TypeError, ValueError):
                row[k] = v
        rows.append(row)
    return plots.training_curves(figures_folder(layout) / f"curves_{name}.png", rows)
