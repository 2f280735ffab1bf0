"""Write an inspection as ``report.json`` + ``report.md`` + ``flagged.png`` (thumbnails of findings)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from zoo.artifacts import atomic_path, write_json, write_text

log = logging.getLogger(__name__)
MAX_ROWS = 40
MAX_LIST = 50


def montage(
    path: str | os.PathLike,
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]],
    *,
    cell: float = 1.6,
    title: str = "",
) -> Path:
    """A PNG grid: one row per ``(row title, [(uint8 image, caption), ...])``."""
    rows = list(rows)
    ncols = max((len(r[1]) for r in rows), default=1)
    height = cell * 1.15 * max(1, len(rows)) + (0.4 if title else 0.0)
    fig, axes = plt.subplots(len(rows) or 1, ncols, figsize=(cell * ncols + 1.5, height), squeeze=False)
    for r, (row_title, items) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(items):
                ax.axis("off")
                continue
            image, caption = items[c]
            ax.imshow(np.asarray(image, dtype=np.uint8), interpolation="nearest")
            ax.set_title(caption, fontsize=6)
        axes[r][0].set_ylabel(row_title, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height) if title else None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def _image(inspection, rel: str) -> np.ndarray:
    from zoo.data.images import BadImage, decode

    sc = inspection.scan
    rec = next(r for r in sc.records if r.rel == rel)
    if rec.path is None:
        return sc.arrays[rec.split][rec.index]
    try:
        from zoo.safeio import MAX_IMAGE_BYTES, read_bytes

        return decode(read_bytes(rec.path, MAX_IMAGE_BYTES), 96, rec.path)
    except (OSError, BadImage):
        return np.zeros((96, 96, 3), np.uint8)


def _caption(rel: str, split: str, cls: str) -> str:
    return f"{split}/{cls}\n{Path(rel).name[:22]}"


def flagged_rows(inspection) -> list[tuple[str, list[tuple[np.ndarray, str]]]]:
    rep = inspection.report
    rows = []
    for g in rep["exact_duplicates"]:
        tag = "exact" + (" LEAK" if g["cross_split"] else "") + (" LABELS" if g["conflicting_labels"] else "")
        rows.append(
            (
                tag,
                [
                    (_image(inspection, f), _caption(f, s, c))
                    for f, s, c in list(zip(g["files"], g["splits"], g["classes"]))[:5]
                ],
            )
        )
    for g in rep["near_duplicates"]:
        tag = (
            f"near {g['score']:.2f}"
            + (" LEAK" if g["cross_split"] else "")
            + (" LABELS" if g["conflicting_labels"] else "")
        )
        rows.append(
            (
                tag,
                [(_image(inspection, f), _caption(f, s, c)) for f, s, c in zip(g["files"], g["splits"], g["classes"])],
            )
        )
    outl = rep["outliers"]
    for start in range(0, len(outl), 5):
        chunk = outl[start : start + 5]
        rows.append(
            (
                "outliers",
                [
                    (
                        _image(inspection, o["file"]),
                        _caption(o["file"], o["split"], o["class"]) + (f"\nscore {o['score']}" if o["score"] else ""),
                    )
                    for o in chunk
                ],
            )
        )
    if len(rows) > MAX_ROWS:
        log.info("flagged.png shows the first %d of %d findings", MAX_ROWS, len(rows))
    return rows[:MAX_ROWS]


def to_markdown(rep: dict[str, Any]) -> str:
    s = rep["summary"]
    lines = [
        f"# Data inspection: `{rep['source']}`",
        "",
        f"Layout: {rep['layout']} · images: {s['images']} · classes: {len(rep['classes'])}",
        "",
    ]
    lines += ["| finding | count |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in s.items() if k != "images"]
    splits = list(rep["counts"])
    lines += ["", "## Class counts", "", "| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for c in rep["classes"]:
        lines.append(f"| {c} | " + " | ".join(str(rep["counts"][sp].get(c, 0)) for sp in splits) + " |")
    lines.append("| **total** | " + " | ".join(str(sum(rep["counts"][sp].values())) for sp in splits) + " |")
    sz = rep["image_sizes"]
    lines += [
        "",
        "## Image sizes",
        "",
        f"{sz['note']}: " + ", ".join(f"{k} ×{v}" for k, v in list(sz["distinct"].items())[:10]),
    ]
    if len(sz["distinct"]) > 10:
        lines.append(f"(and {len(sz['distinct']) - 10} more sizes; width {sz['width']}, height {sz['height']})")
    for key, title in (
        ("unreadable", "Unreadable files"),
        ("empty_class_folders", "Empty class folders"),
        ("other_files", "Non-image files"),
    ):
        if rep[key]:
            lines += ["", f"## {title}", ""] + [
                f"- `{x['file']}`: {x['reason']}" if isinstance(x, dict) else f"- `{x}`" for x in rep[key][:MAX_LIST]
            ]
    if rep["leakage"]:
        lines += ["", "## Leakage across splits", ""] + [
            f"- {k}: {v} duplicate group(s)" for k, v in rep["leakage"].items()
        ]

    def flags(g):
        return ("**cross-split** " if g["cross_split"] else "") + (
            "**conflicting labels** " if g["conflicting_labels"] else ""
        )

    if rep["exact_duplicates"]:
        lines += ["", "## Exact duplicates", ""]
        lines += [
            f"- {flags(g)}({g['match']}) " + ", ".join(f"`{f}`" for f in g["files"])
            for g in rep["exact_duplicates"][:MAX_LIST]
        ]
    if rep["near_duplicates"]:
        lines += ["", "## Near duplicates", ""]
        lines += [
            f"- {flags(g)}score {g['score']:.3f}, pHash {g['hamming']} bits, {g['symmetry']}: "
            + ", ".join(f"`{f}`" for f in g["files"])
            for g in rep["near_duplicates"][:MAX_LIST]
        ]
    if rep["outliers"]:
        lines += ["", "## Outliers", ""] + [
            f"- `{o['file']}`: {'; '.join(o['reasons'])}" for o in rep["outliers"][:MAX_LIST]
        ]
    for key in ("exact_duplicates", "near_duplicates", "outliers"):
        if len(rep[key]) > MAX_LIST:
            lines.append(f"\n({len(rep[key]) - MAX_LIST} more {key.replace('_', ' ')} in report.json)")
    lines += ["", f"## Suggested drops ({len(rep['drop'])})", ""]
    lines += [f"- `{d['file']}`: {d['reason']}" for d in rep["drop"][:MAX_LIST]] or ["none"]
    p = rep["params"]
    lines += [
        "",
        f"Method: exact = sha256 of file bytes or decoded pixels; near = pHash ≤ {p['max_hamming']} bits over 8 symmetries, "
        f"confirmed by shift-tolerant high-pass correlation ≥ {p['near_score']}; outliers = {rep['outlier_method']['method']} > {p['outlier_threshold']}. "
        "Thumbnails of the findings: `flagged.png`.",
        "",
    ]
    return "\n".join(lines)


def write_outputs(inspection, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(out / "report.json", inspection.report),
        "markdown": write_text(out / "report.md", to_markdown(inspection.report)),
    }
    rows = flagged_rows(inspection)
    if rows:
        paths["png"] = montage(out / "flagged.png", rows, title=f"flagged in {Path(inspection.report['source']).name}")
    else:
        stale = out / "flagged.png"
        if stale.exists():
            stale.unlink()
    return paths
