"""``clean``: a cleaned *copy* of a dataset, or just the list of files to drop — never edits the source.

``mode="link"`` hard-links every kept file into ``out/data/<same relative path>`` (no extra
disk space; falls back to a copy across file systems), ``mode="copy"`` copies, ``mode="list"``
only writes ``drop.txt``. Every mode also writes the inspection (``report.json``/``.md``,
``flagged.png``) next to it, so the cleaned folder documents why each file is missing. Hard
links share content with the originals: edit the copies in place only with ``mode="copy"``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from zoo.artifacts import write_text
from zoo.curate.inspection import CurateConfig, run_inspection
from zoo.errors import ZooError
from zoo.progress import progress

log = logging.getLogger(__name__)
MODES = ("link", "copy", "list")


def clean(source, out: str | os.PathLike, *, mode: str = "link", config: CurateConfig | None = None, **overrides) -> dict[str, Any]:
    """Inspect ``source`` and write the cleaned copy (or drop list) under ``out``; returns a summary."""
    if mode not in MODES:
        raise ZooError(f"clean mode '{mode}' is not one of {', '.join(MODES)}")
    out = Path(out).expanduser()
    src_dir = Path(str(getattr(source, "source", source))).expanduser()
    if src_dir.is_dir():
        src, dst = src_dir.resolve(), out.resolve()
        if dst == src or src in dst.parents or dst in src.parents:
            raise ZooError(f"--out {out} must be outside the data folder {src_dir} (and not contain it)")
    if out.exists() and any(out.iterdir()):
        raise ZooError(f"{out}: folder exists and is not empty; choose another --out")

    inspection = run_inspection(source, config=config, **overrides)
    sc, rep = inspection.scan, inspection.report
    dropped = {d["file"] for d in rep["drop"]}
    if mode != "list" and (sc.root is None or any(r.path is None for r in sc.records)):
        raise ZooError(f"{sc.source}: not a folder of image files; only --mode list works for it")

    from zoo.curate.report import write_outputs

    out.mkdir(parents=True, exist_ok=True)
    write_outputs(inspection, out)
    write_text(out / "drop.txt", "".join(f"{d['file']}\t{d['reason']}\n" for d in rep["drop"]))
    summary = {"source": str(sc.source), "mode": mode, "images": len(sc.records), "dropped": len(dropped), "kept": len(sc.records) - len(dropped), "out": str(out)}
    if mode == "list":
        summary["drop_list"] = str(out / "drop.txt")
        return summary

    data = out / "data"
    # Built under a hidden name and renamed at the end: an interrupted clean never leaves a
    # plausible-looking but incomplete data/ folder (loaders skip hidden folders).
    partial = out / ".data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    linked = copied = 0
    for rec in progress(sc.records, total=len(sc.records), desc="writing cleaned copy"):
        if rec.rel in dropped:
            continue
        target = partial / rec.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "link":
            try:
                os.link(rec.path, target)
                linked += 1
                continue
            except OSError as exc:  # other file system, or links not allowed
                log.debug("hard link failed for %s (%s); copying", rec.path, exc)
        shutil.copy2(rec.path, target)
        copied += 1
    os.replace(partial, data)
    summary.update({"data": str(data), "linked": linked, "copied": copied})
    log.info("cleaned copy: %d kept (%d linked, %d copied), %d dropped -> %s", linked + copied, linked, copied, len(dropped), data)
    return summary
