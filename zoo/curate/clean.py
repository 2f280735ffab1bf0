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

from zoo import ownership
from zoo.artifacts import write_text
from zoo.curate.inspection import CurateConfig, run_inspection
from zoo.errors import ZooError
from zoo.progress import progress
from zoo.safeio import MAX_IMAGE_BYTES, check_regular

log = logging.getLogger(__name__)
MODES = ("link", "copy", "list")


def clean(
    source, out: str | os.PathLike, *, mode: str = "link", config: CurateConfig | None = None, **overrides
) -> dict[str, Any]:
    """Inspect ``source`` and write the cleaned copy (or drop list) under ``out``; returns a summary."""
    if mode not in MODES:
        raise ZooError(f"clean mode '{mode}' is not one of {', '.join(MODES)}")
    out = Path(out).expanduser()
    src_dir = Path(str(getattr(source, "source", source))).expanduser()
    # zoo.ownership: a new or empty folder outside the data (and not containing it); locked while it is written.
    with ownership.claim(out, "curate", sources=[src_dir] if src_dir.is_dir() else []) as claim:
        inspection = run_inspection(source, config=config, **overrides)
        sc = inspection.scan
        if mode != "list" and (sc.root is None or any(r.path is None for r in sc.records)):
            raise ZooError(f"{sc.source}: not a folder of image files; only --mode list works for it")
        # Assembled in a hidden sibling and renamed at the end: an interrupted clean leaves no
        # plausible-looking but incomplete folder (and the next run removes the leftover).
        with claim.staging() as tmp:
            summary = _write(inspection, tmp, out, mode)
    return summary


def _write(inspection, tmp: Path, out: Path, mode: str) -> dict[str, Any]:
    from zoo.curate.report import write_outputs

    sc, rep = inspection.scan, inspection.report
    dropped = {d["file"] for d in rep["drop"]}
    write_outputs(inspection, tmp)
    write_text(tmp / "drop.txt", "".join(f"{d['file']}\t{d['reason']}\n" for d in rep["drop"]))
    summary = {
        "source": str(sc.source),
        "mode": mode,
        "images": len(sc.records),
        "dropped": len(dropped),
        "kept": len(sc.records) - len(dropped),
        "out": str(out),
    }
    if mode == "list":
        summary["drop_list"] = str(out / "drop.txt")
        return summary
    linked = copied = 0
    for rec in progress(sc.records, total=len(sc.records), desc="writing cleaned copy"):
        if rec.rel in dropped:
            continue
        target = tmp / "data" / rec.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "link":
            try:
                os.link(rec.path, target)
                linked += 1
                continue
            except OSError as exc:  # other file system, or links not allowed
                log.debug("hard link failed for %s (%s); copying", rec.path, exc)
        check_regular(rec.path, MAX_IMAGE_BYTES)
        shutil.copy2(rec.path, target)
        copied += 1
    data = out / "data"
    summary.update({"data": str(data), "linked": linked, "copied": copied})
    log.info(
        "cleaned copy: %d kept (%d linked, %d copied), %d dropped -> %s",
        linked + copied,
        linked,
        copied,
        len(dropped),
        data,
    )
    return summary
