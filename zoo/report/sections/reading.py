"""Reading a run's artifact files for the report: cards, JSON, CSV, stored probabilities, the data, and
which artifacts the run has. A file that is not there reads as None, never an exception."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.artifacts import parameter_count, probs_files, read_card
from zoo.errors import ZooError


def card(folder: Path) -> dict[str, Any] | None:
    """The card of a complete folder, or None (missing or incomplete: the section says so)."""
    try:
        return read_card(folder, verify=False)
    except ZooError:
        return None


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except OSError:
        return []


def members(layout) -> list[tuple[str, Path]]:
    return [(m.run_name, Path(layout.member_dir(m.run_name))) for m in layout.cfg.members]


def trained(layout) -> list[tuple[str, Path]]:
    """What ``zoo.train`` wrote: the members and, when distillation is on, the student."""
    return members(layout) + ([("student", Path(layout.student_dir()))] if layout.cfg.distill.enabled else [])


def ensembles(layout) -> list[tuple[str, Path]]:
    return [(f"{m} ensemble", Path(layout.ensemble_dir(m))) for m in layout.ensemble_methods(layout.cfg)]


def artifacts(layout) -> list[tuple[str, Path]]:
    """Members, ensembles and the student, in pipeline order (configured ones, complete or not)."""
    out = members(layout) + ensembles(layout)
    if layout.cfg.distill.enabled:
        out.append(("student", Path(layout.student_dir())))
    return out


def report_split(layout) -> str:
    """The split the report's pictures use: the held-out test split when the run scored one, else val.

    A config may ask for test on data that has none: PBC's folder tree here holds train and val (its test
    split is held back), and every confusion matrix, reliability diagram and mistake would be missing.
    """
    if "test" in layout.cfg.evaluate.splits and any(
        (folder / probs_files("test")[0]).is_file() for _, folder in artifacts(layout)
    ):
        return "test"
    return "val"


def oof(folder: Path, split: str) -> bool:
    """Whether ``folder`` keeps out-of-fold probabilities for ``split``: an ensemble fitted on it."""
    return (folder / probs_files(split, "_oof")[0]).is_file()


def stored_probs(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored probabilities and labels; on a split an ensemble was fitted on, its out-of-fold ones (the in-sample
    ones come from a combiner that saw those very images)."""
    p, y = (folder / rel for rel in probs_files(split, "_oof" if oof(folder, split) else ""))
    if not (p.is_file() and y.is_file()):
        return None
    try:
        return np.load(p, allow_pickle=False), np.load(y, allow_pickle=False)
    except ValueError:
        return None


def not_run(what: str, folder: Path) -> str:
    if folder.exists():
        return f"{what}: {folder} is incomplete (its stage did not finish; rerun `zoo run` to resume)."
    return f"{what}: not run yet ({folder} does not exist)."


def complete(section, named_folders: list[tuple[str, Path]]) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """``(name, folder, card)`` of each complete folder; each incomplete one becomes a sentence in ``section``."""
    for name, folder in named_folders:
        c = card(folder)
        if c is None:
            section.missing(not_run(name, folder))
            continue
        yield name, folder, c


def ensemble_parameters(layout, folder: Path) -> int | None:
    """Sum of the members' parameters (an ensemble runs all of them)."""
    spec = read_json(folder / "ensemble.json") or {}
    total = 0
    for m in spec.get("members", []):
        c = card(Path(layout.member_dir(m.get("name", ""))))
        if c is None or not parameter_count(c):
            return None
        total += parameter_count(c)
    return total or None


def run_dataset(layout, size: int | None = None):
    """``(dataset, None)`` or ``(None, reason)``: the report still renders when the data has moved."""
    try:
        if size is not None and size != layout.cfg.data.image_size and hasattr(layout, "dataset_at"):
            return layout.dataset_at(size), None
        return layout.dataset, None
    except ZooError as exc:
        return None, str(exc)


def figures_folder(layout) -> Path:
    path = Path(layout.report_dir()) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path
