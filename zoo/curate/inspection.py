"""``inspect``: one read-only pass over a dataset that says what is in it and what looks wrong.

The report (a JSON-ready dict) holds class counts per split, an image-size summary,
unreadable files, exact and near duplicate groups (marked when they cross splits — leakage —
or carry different labels), outliers, and the ``drop`` list that :func:`zoo.curate.clean`
applies. Which copy of a duplicate group survives is decided here, once: a group whose copies
disagree on the label is dropped entirely (no way to know which label is right); otherwise the
copy in the highest-priority split is kept (default test > val > train, so evaluation splits
stay as they are and the leaking training copy goes).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.curate import duplicates, outliers
from zoo.curate.features import compute
from zoo.curate.scan import Scan, scan
from zoo.errors import ZooError

log = logging.getLogger(__name__)
REPORT_SCHEMA = 1


@dataclass
class CurateConfig:
    """Thresholds, with the evidence for their defaults in :mod:`duplicates` / :mod:`outliers`."""

    max_hamming: int = 10  # pHash bits (of 64) for near-duplicate candidates
    near_score: float = 0.85  # shift-tolerant high-pass NCC needed to confirm a candidate
    outlier_threshold: float = 10.0  # × the typical k-NN distance
    keep_priority: tuple[str, ...] = ("test", "val", "train", "all")
    drop_outliers: bool = True
    workers: int = 2
    image_size: int = 64  # only for sources that must go through zoo.data.load_dataset

    def validate(self) -> None:
        if not 0 <= self.max_hamming <= 32:
            raise ZooError(f"max_hamming must be in 0..32, got {self.max_hamming}")
        if not 0 < self.near_score <= 1:
            raise ZooError(f"near_score must be in (0, 1], got {self.near_score}")
        if self.outlier_threshold <= 1:
            raise ZooError(f"outlier_threshold (a distance ratio) must be > 1, got {self.outlier_threshold}")


@dataclass
class Inspection:
    """What :func:`inspect` computed, kept for ``clean`` and the thumbnail grid."""

    scan: Scan
    report: dict[str, Any]
    feats: Any = field(repr=False, default=None)


def inspect(
    source, *, out: str | os.PathLike | None = None, config: CurateConfig | None = None, **overrides
) -> dict[str, Any]:
    """Inspect a class-folder tree, another ``--data`` source, or a loaded Dataset; return the report.

    With ``out``, also writes ``report.json``, ``report.md`` and ``flagged.png`` there.
    """
    if out is None:
        return run_inspection(source, config=config, **overrides).report
    from zoo import ownership
    from zoo.curate.report import write_outputs

    src = Path(str(getattr(source, "source", source))).expanduser()
    # zoo.ownership: a new or empty folder outside the data, or an earlier report of this command (its marker).
    with ownership.claim(out, "inspect", resumable=True, sources=[src] if src.is_dir() else []) as claim:
        result = run_inspection(source, config=config, **overrides)
        claim.out.mkdir(parents=True, exist_ok=True)
        ownership.write_marker(claim.out, "inspect")
        write_outputs(result, claim.out)
    return result.report


def run_inspection(source, *, config: CurateConfig | None = None, **overrides) -> Inspection:
    """Scan ``source``, find unreadable files, duplicates (exact and near), leakage and outliers; decide what to drop."""
    cfg = CurateConfig(**{**asdict(config or CurateConfig()), **overrides})
    cfg.validate()
    t0 = time.time()
    sc = scan(source, cfg.image_size)
    feats = compute(sc, workers=cfg.workers)
    exact, near = _find_duplicates(sc.records, feats, cfg)
    found_outliers, outlier_method = outliers.find_outliers(feats.stats, feats.ok, threshold=cfg.outlier_threshold)
    drop = _decide_drops(sc.records, feats, cfg, exact, near, found_outliers)
    for group in exact:
        del group["_cluster"]
    for pair in near:
        del pair["_members"]
    report = _report(sc, feats, cfg, exact, near, found_outliers, outlier_method, drop)
    report["seconds"] = round(time.time() - t0, 1)
    log.info("inspected %d images in %.1fs: %s", len(sc.records), time.time() - t0, report["summary"])
    return Inspection(sc, report, feats)


def _find_duplicates(recs, feats, cfg: CurateConfig) -> tuple[list[dict], list[dict]]:
    """Exact groups and near pairs, each described by files, splits and classes.

    Near pairs are searched among one representative per exact group; a near pair between exact
    groups stands for every copy in both (``_members``; an exact group's rows are its ``_cluster``). Both
    keys serve the clustering and are removed before the report is written.
    """
    exact = duplicates.exact_groups(feats)
    in_exact = {i: g for g in exact for i in g["members"]}
    reps = [i for i in np.flatnonzero(feats.ok) if i not in in_exact or in_exact[i]["members"][0] == i]
    near = duplicates.near_pairs(feats, reps, max_hamming=cfg.max_hamming, min_score=cfg.near_score)

    def describe(members: list[int]) -> dict[str, Any]:
        splits = [recs[i].split for i in members]
        labels = [recs[i].label for i in members]
        return {
            "files": [recs[i].rel for i in members],
            "splits": splits,
            "classes": labels,
            "cross_split": len(set(splits)) > 1,
            "conflicting_labels": len(set(labels)) > 1,
        }

    exact_out = [{**describe(g["members"]), "match": g["match"], "_cluster": list(g["members"])} for g in exact]
    near_out = []
    for p in near:
        a = in_exact[p["a"]]["members"] if p["a"] in in_exact else [p["a"]]
        b = in_exact[p["b"]]["members"] if p["b"] in in_exact else [p["b"]]
        near_out.append(
            {
                **describe([p["a"], p["b"]]),
                "hamming": p["hamming"],
                "score": p["score"],
                "symmetry": p["symmetry"],
                "_members": a + b,
            }
        )
    return exact_out, near_out


def _decide_drops(recs, feats, cfg: CurateConfig, exact, near, found_outliers) -> dict[int, str]:
    """Row -> why it is dropped: unreadable; every copy but one per duplicate cluster (or all, when labels
    conflict); outliers when ``cfg.drop_outliers``. The kept copy is the one in the highest-priority split."""
    # duplicate clusters = exact groups joined by near pairs
    uf = duplicates.UnionFind(len(recs))
    for members in [g["_cluster"] for g in exact] + [p["_members"] for p in near]:
        for i in members[1:]:
            uf.union(members[0], i)
    drop: dict[int, str] = {i: f"unreadable: {reason}" for i, reason in feats.errors.items()}
    rank = {s: k for k, s in enumerate(cfg.keep_priority)}
    for members in uf.groups(range(len(recs))):
        labels = {recs[i].label for i in members}
        if len(labels) > 1:
            for i in members:
                drop.setdefault(i, f"duplicate copies carry different labels ({', '.join(sorted(labels))})")
            continue
        keep = min(members, key=lambda i: (rank.get(recs[i].split, len(rank)), recs[i].rel))
        for i in members:
            if i != keep:
                drop.setdefault(i, f"duplicate of {recs[keep].rel}")
    if cfg.drop_outliers:
        for o in found_outliers:
            drop.setdefault(o["index"], "outlier: " + "; ".join(o["reasons"]))
    return drop


def _report(sc, feats, cfg: CurateConfig, exact, near, found_outliers, outlier_method, drop) -> dict[str, Any]:
    """The curation report (``curation_report.json``; the Markdown and the report's data section read it)."""
    recs = sc.records
    leakage = Counter()
    for g in exact + near:
        if g["cross_split"]:
            leakage["~".join(sorted(set(g["splits"])))] += 1
    counts: dict[str, dict[str, int]] = {}
    for r in recs:
        counts.setdefault(r.split, {c: 0 for c in sc.class_names})[r.label] += 1
    sizes = [s for s in feats.sizes if s is not None]
    size_counts = Counter(f"{w}x{h}" for w, h in sizes)
    return {
        "schema": REPORT_SCHEMA,
        "kind": "curation_report",
        "source": str(sc.source),
        "layout": sc.layout,
        "classes": list(sc.class_names),
        "counts": counts,
        "total": len(recs),
        "image_sizes": {
            "distinct": dict(size_counts.most_common()),
            "width": _range([w for w, _ in sizes]),
            "height": _range([h for _, h in sizes]),
            "note": "original file sizes" if sc.root is not None else "array sizes (already resized by the loader)",
        },
        "unreadable": [{"file": recs[i].rel, "reason": r} for i, r in sorted(feats.errors.items())],
        "empty_class_folders": sc.empty_classes,
        "other_files": sc.other_files,
        "exact_duplicates": exact,
        "near_duplicates": near,
        "leakage": dict(leakage),
        "outliers": [
            {
                "file": recs[o["index"]].rel,
                "split": recs[o["index"]].split,
                "class": recs[o["index"]].label,
                "score": o["score"],
                "reasons": o["reasons"],
            }
            for o in found_outliers
        ],
        "outlier_method": outlier_method,
        "drop": [
            {"file": recs[i].rel, "split": recs[i].split, "class": recs[i].label, "reason": r}
            for i, r in sorted(drop.items(), key=lambda kv: recs[kv[0]].rel)
        ],
        "summary": {
            "images": len(recs),
            "unreadable": len(feats.errors),
            "exact_duplicate_groups": len(exact),
            "near_duplicate_pairs": len(near),
            "cross_split_groups": sum(leakage.values()),
            "conflicting_label_groups": sum(g["conflicting_labels"] for g in exact + near),
            "outliers": len(found_outliers),
            "to_drop": len(drop),
        },
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
    }


def _range(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": int(min(values)), "median": float(np.median(values)), "max": int(max(values))}
