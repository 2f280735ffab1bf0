"""The folder layout of one ``zoo run`` output: the one place that names its sub-folders.

Every stage (training, ensembles, distillation, export, benchmark), the report and ``zoo bench``
find folders through a :class:`RunLayout` (the pipeline's ``Context`` is one), so renaming a
folder is a change here and nowhere else::

    <root>/members/<name>/       member runs            <root>/student/     the distilled student
    <root>/members/<name>/snapshots/cycle<k>/   a member's snapshot members (zoo.train ``snapshots``)
    <root>/ensembles/<method>/   vote, stack            <root>/exports/<export name>/
    <root>/bench/  <root>/report/  <root>/curation/
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.train_config import snapshot_dirs

# Export folder name per source kind: exports/member-<run>, exports/ensemble-<method>, exports/student.
_EXPORT_PREFIX = {"member": "member-", "ensemble": "ensemble-", "student": ""}


class RunLayout:
    """Folder names under one ``zoo run`` output folder ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def member_dir(self, name: str) -> Path:
        return self.root / "members" / name

    def ensemble_member_dirs(self, cfg) -> list[Path]:
        """What the ensembles of ``cfg`` (a ``PipelineConfig``) combine: every member's folder, each followed by
        its snapshot members (``snapshots`` > 1, inside it: :func:`zoo.train_config.snapshot_dirs`)."""
        dirs: list[Path] = []
        for m in cfg.members:
            folder = self.member_dir(m.run_name)
            dirs += [folder, *snapshot_dirs(folder, cfg.member_train(m).snapshots)]
        return dirs

    def ensemble_methods(self, cfg) -> list[str]:
        """The ensembles ``cfg`` builds: its methods when enabled and there are ≥ 2 members to combine
        (snapshots included), else none. Every stage and report that reads an ensemble folder asks here."""
        if not cfg.ensemble.enabled or len(self.ensemble_member_dirs(cfg)) < 2:
            return []
        return list(cfg.ensemble.methods)

    def ensemble_dir(self, method: str) -> Path:
        return self.root / "ensembles" / method

    def student_dir(self) -> Path:
        return self.root / "student"

    def exports_dir(self) -> Path:
        return self.root / "exports"

    def export_dir(self, kind: str, name: str) -> Path:
        """Where the export of the ``kind`` artifact ``name`` goes (the student has one: ``name`` is ignored)."""
        return self.exports_dir() / export_name(kind, name)

    def bench_dir(self) -> Path:
        return self.root / "bench"

    def report_dir(self) -> Path:
        return self.root / "report"

    def curation_dir(self) -> Path:
        return self.root / "curation"

    @classmethod
    def of_artifact(cls, folder: str | os.PathLike, kind: str) -> RunLayout | None:
        """The layout ``folder`` (a member, ensemble or student of ``kind``) sits in, or None if it is not laid out so."""
        folder = Path(folder)
        parent = {"member": "members", "ensemble": "ensembles"}.get(kind)
        if parent is not None:
            return cls(folder.parent.parent) if folder.parent.name == parent else None
        if kind == "student":
            return cls(folder.parent) if folder.name == "student" else None
        return None


def export_name(kind: str, name: str) -> str:
    """``member-<run>``, ``ensemble-<method>`` or ``student``: an export's folder name in a run."""
    if kind not in _EXPORT_PREFIX:
        raise ValueError(f"no export folder for a {kind!r} artifact")
    return "student" if kind == "student" else _EXPORT_PREFIX[kind] + name
