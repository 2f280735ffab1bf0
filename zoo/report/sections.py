"""One function per report section, each reading only the artifact files of a pipeline run.

Every function takes the pipeline's layout (``zoo.pipeline.Context``: ``cfg``, ``root``,
``member_dir``, ``ensemble_dir``, ``student_dir``, ``exports_dir``, ``bench_dir``,
``report_dir``, ``curation_dir`` and the lazily loaded ``dataset``) and returns a
:class:`~zoo.report.render.Section`. Files written by other stages are read as plain JSON,
CSV and PNG — this module imports neither ``ensemble`` nor ``export`` — and a file that is not
there becomes a sentence saying so, never an exception.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.artifacts import parameter_count, probs_files, read_card
from zoo.errors import ZooError
from zoo.report.render import Section, count, megabytes, num, pct

log = logging.getLogger(__name__)
GALLERY_SIZE = 12
MONTAGE_PER_CLASS = 8


# ----------------------------------------------------------------------------- reading helpers
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


def _oof(folder: Path, split: str) -> bool:
    """Whether ``folder`` keeps out-of-fold probabilities for ``split``: an ensemble fitted on it."""
    return (folder / probs_files(split, "_oof")[0]).is_file()


def _stored_probs(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored probabilities and labels; on a split an ensemble was fitted on, its out-of-fold ones (the in-sample
    ones come from a combiner that saw those very images)."""
    p, y = (folder / rel for rel in probs_files(split, "_oof" if _oof(folder, split) else ""))
    if not (p.is_file() and y.is_file()):
        return None
    try:
        return np.load(p, allow_pickle=False), np.load(y, allow_pickle=False)
    except ValueError:
        return None


def _not_run(what: str, folder: Path) -> str:
    if folder.exists():
        return f"{what}: {folder} is incomplete (its stage did not finish; rerun `zoo run` to resume)."
    return f"{what}: not run yet ({folder} does not exist)."


# ----------------------------------------------------------------------------- sections
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
            n_params = _ensemble_parameters(layout, folder)
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
    dataset, why = _dataset(layout)
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
            "Curation findings: none recorded for this run. Run `zoo data inspect DATA --out "
            f"{layout.curation_dir()}` to add them (duplicates, leakage across splits, outliers)."
        )


def _curation_folders(layout) -> list[Path]:
    out = [Path(layout.curation_dir())]
    src = Path(layout.cfg.data.source)
    if src.name == "data" and src.is_dir():  # a cleaned copy from `zoo data clean --out X`: X/report.json
        out.append(src.parent)
    return out


def training(layout) -> Section:
    s = Section(
        "training",
        "Training curves",
        "Loss, accuracy and learning rate per epoch (train vs val); dotted lines mark a new training phase.",
    )
    runs = members(layout) + ([("student", Path(layout.student_dir()))] if layout.cfg.distill.enabled else [])
    rows = []
    for name, folder in runs:
        c = card(folder)
        if c is None:
            s.missing(_not_run(name, folder))
            continue
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
    return plots.training_curves(_figures(layout) / f"curves_{name}.png", rows)


def member_metrics(layout) -> Section:
    s = Section(
        "members",
        "Per-member metrics",
        "Each member (and the student) on every split it was scored on: "
        "accuracy, balanced accuracy, macro F1, ROC AUC (one-vs-rest), NLL and expected calibration error.",
    )
    rows = []
    runs = members(layout) + ([("student", Path(layout.student_dir()))] if layout.cfg.distill.enabled else [])
    for name, folder in runs:
        c = card(folder)
        if c is None:
            s.missing(_not_run(name, folder))
            continue
        for split, m in c.get("metrics", {}).items():
            if isinstance(m, dict) and "accuracy" in m:
                rows.append(
                    [
                        name,
                        split,
                        str(m.get("n", "")),
                        pct(m.get("accuracy")),
                        pct(m.get("balanced_accuracy")),
                        pct(m.get("macro_f1")),
                        num(m.get("roc_auc_ovr")),
                        num(m.get("nll")),
                        pct(m.get("ece")),
                    ]
                )
    if rows:
        s.table(["model", "split", "images", "accuracy", "balanced acc.", "macro F1", "ROC AUC", "NLL", "ECE"], rows)
    per_class = _per_class(layout)
    if per_class:
        s.heading(f"Per-class recall on {per_class[0]}")
        s.table(per_class[1], per_class[2])
    return s


def _per_class(layout) -> tuple[str, list[str], list[list[str]]] | None:
    split = report_split(layout)
    cols, table = None, {}
    for name, folder in members(layout) + [("student", Path(layout.student_dir()))]:
        m = read_json(folder / "eval" / split / "metrics.json")
        if not isinstance(m, dict) or not isinstance(m.get("per_class"), dict):
            continue
        cols = list(m["per_class"])
        table[name] = m["per_class"]
    if not table:
        return None
    rows = [
        [
            cls,
            *[pct(table[n][cls].get("recall"), 1) for n in table],
            str(next(iter(table.values()))[cls].get("support", "")),
        ]
        for cls in cols
    ]
    return split, ["class", *table, "images"], rows


def ensemble_comparison(layout) -> Section:
    s = Section(
        "ensembles",
        "Ensemble comparison",
        "Members vs soft voting vs stacking on the same images, without and "
        "with temperature scaling (+T). Fitted rows on the fit split are scored out-of-fold; other splits are held "
        "out. Intervals are 95% bootstrap confidence intervals where the ensemble stage recorded them.",
    )
    ens = ensembles(layout)
    if not ens:
        s.missing("Ensembles are not enabled in this run's config (or it has fewer than two members).")
        return s
    shown = False
    tables = []
    for name, folder in ens:
        c = card(folder)
        if c is None:
            s.missing(_not_run(name, folder))
            continue
        spec = read_json(folder / "ensemble.json") or {}
        names = [m.get("name", "?") for m in spec.get("members", [])]
        desc = f"{name}: method {spec.get('method', c.get('method', '?'))}"
        if isinstance(spec.get("weights"), list):
            desc += "; weights " + ", ".join(f"{n} {float(w):.2f}" for n, w in zip(names, spec["weights"]))
        if spec.get("temperature") is not None:
            desc += f"; temperature {float(spec['temperature']):.3f}"
        if spec.get("tta"):
            desc += f"; TTA {spec['tta']}"
        s.text(desc + ".")
        rows = read_json(folder / "comparison.json")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            tables.append((name, folder, rows))
    # Ensembles fitted alike hold the same comparison: show it once. A robust fit's comparison differs (its
    # combiners are fitted on shifted copies too, scored in a `<split>_shifted` table of their own).
    distinct = [t for i, t in enumerate(tables) if all(t[2] != u[2] for u in tables[:i])]
    for name, folder, rows in distinct:
        shown = True
        if len(distinct) > 1:
            s.text(f"The members and both combiners as {name}'s build fitted and scored them.", heading=name)
        _comparison_tables(s, rows)
        for split in dict.fromkeys(r.get("split") for r in rows):
            s.figure(folder / f"comparison_{split}.png", f"accuracy and ECE per variant on {split} ({name})", "l")
    if not shown:
        s.missing("No comparison table: no ensemble folder holds comparison.json yet.")
    return s


_BASE = (
    "split",
    "model",
    "group",
    "calibrated",
    "scored",
    "n",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "nll",
    "ece",
)


def _ci(row: dict[str, Any], key: str) -> str:
    """`` [lo, hi]`` for the CI of ``key`` in any of the shapes a comparison row may carry it."""
    plain = (("ci_low", "ci_high"),) if key == "accuracy" else ()  # ensemble.compare: the accuracy's bootstrap CI
    for lo_key, hi_key in (
        *plain,
        (f"{key}_lo", f"{key}_hi"),
        (f"{key}_low", f"{key}_high"),
        (f"{key}_ci_low", f"{key}_ci_high"),
    ):
        if lo_key in row and hi_key in row:
            return f" [{pct(row[lo_key], 1)}, {pct(row[hi_key], 1)}]"
    ci = row.get(f"{key}_ci")
    if ci is None and isinstance(row.get("ci"), dict):
        ci = row["ci"].get(key)
    if isinstance(ci, dict):
        ci = [ci.get("low", ci.get("lo")), ci.get("high", ci.get("hi"))]
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f" [{pct(ci[0], 1)}, {pct(ci[1], 1)}]"
    return ""


def _is_ci_key(k: str) -> bool:
    return k == "ci" or k.endswith(("_ci", "_lo", "_hi", "_low", "_high", "_ci_low", "_ci_high"))


_EVIDENCE = ("reference", "diff_vs_reference", "mcnemar_p", "mcnemar_b", "mcnemar_c")


def _evidence(r: dict[str, Any]) -> list[str]:
    """``Δ vs reference`` and ``McNemar p (b/c)`` cells of a comparison row (ensemble.compare's evidence)."""
    diff = r.get("diff_vs_reference")
    p = r.get("mcnemar_p")
    return [
        f"{100 * float(diff):+.2f} pts" if isinstance(diff, (int, float)) else "",
        f"{float(p):.3g} ({r.get('mcnemar_b', '?')}/{r.get('mcnemar_c', '?')})" if isinstance(p, (int, float)) else "",
    ]


def _comparison_tables(s: Section, rows: list[dict[str, Any]]) -> None:
    evidence = any("mcnemar_p" in r or "diff_vs_reference" in r for r in rows)
    reference = next((r["reference"] for r in rows if r.get("reference")), "the best member")
    extra = [
        k
        for k in dict.fromkeys(k for r in rows for k in r)
        if k not in _BASE and k not in _EVIDENCE and not _is_ci_key(k)
    ]
    extra = [k for k in extra if all(isinstance(r.get(k), (int, float, str, type(None))) for r in rows)]
    for split in dict.fromkeys(r.get("split") for r in rows):
        sub = [r for r in rows if r.get("split") == split]
        best = max((r.get("accuracy", 0) for r in sub), default=0)
        table = []
        for r in sub:
            acc = pct(r.get("accuracy")) + _ci(r, "accuracy") + (" ★" if r.get("accuracy") == best else "")
            table.append(
                [
                    r.get("model", ""),
                    "yes" if r.get("calibrated") else "no",
                    r.get("scored", ""),
                    acc,
                    pct(r.get("macro_f1")) + _ci(r, "macro_f1"),
                    num(r.get("nll")),
                    pct(r.get("ece")) + _ci(r, "ece"),
                    *(_evidence(r) if evidence else []),
                    *[_cell(r.get(k)) for k in extra],
                ]
            )
        n = sub[0].get("n", "")
        s.table(
            [
                "model",
                "+T",
                "scored",
                "accuracy [95% CI]" if any("ci_low" in r for r in sub) else "accuracy",
                "macro F1",
                "NLL",
                "ECE",
                *([f"Δ vs {reference}", "McNemar p (b/c)"] if evidence else []),
                *[k.replace("_", " ") for k in extra],
            ],
            table,
            f"split {split} ({n} images); ★ best accuracy"
            + ("; b/c: images only the reference / only this model got right" if evidence else ""),
        )


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return "" if v is None else str(v)


def distillation(layout) -> Section:
    s = Section(
        "distillation",
        "Distillation",
        "The student trained to imitate the teacher ensemble: how much accuracy "
        "it keeps at what fraction of the parameters.",
    )
    if not layout.cfg.distill.enabled:
        s.missing("Distillation is not enabled in this run's config.")
        return s
    folder = Path(layout.student_dir())
    c = card(folder)
    if c is None:
        s.missing(_not_run("student", folder))
        return s
    d = c.get("distillation", {})
    teacher = d.get("teacher", {}) if isinstance(d.get("teacher"), dict) else {}
    teacher_params = _teacher_parameters(layout, teacher)
    rows = []
    tm, sm, agree = d.get("teacher_metrics", {}), c.get("metrics", {}), d.get("student_teacher_agreement", {})
    for split in [k for k in sm if isinstance(sm.get(k), dict) and "accuracy" in sm[k]]:
        t = tm.get(split, {}) if isinstance(tm, dict) else {}
        gap = (sm[split]["accuracy"] - t["accuracy"]) if "accuracy" in t else None
        rows.append(
            [
                split,
                pct(t.get("accuracy")),
                pct(sm[split].get("accuracy")),
                f"{100 * gap:+.2f} pts" if gap is not None else "",
                pct(agree.get(split)) if isinstance(agree, dict) else "",
                pct(t.get("ece")),
                pct(sm[split].get("ece")),
            ]
        )
    names = teacher.get("members")
    names = ", ".join(map(str, names)) if isinstance(names, list) else "?"
    s.text(
        f"Teacher: {teacher.get('method', layout.cfg.distill.teacher)} ensemble of the members {names}"
        + (f" ({count(teacher_params)} parameters)" if teacher_params else "")
        + f"; student: {c.get('member', '?')} with {count(parameter_count(c))} parameters; "
        f"temperature {d.get('temperature', '?')}, alpha {d.get('alpha', '?')}."
    )
    if rows:
        s.table(
            [
                "split",
                "teacher accuracy",
                "student accuracy",
                "student − teacher",
                "agreement",
                "teacher ECE",
                "student ECE",
            ],
            rows,
        )
    return s


def _teacher_parameters(layout, teacher: dict[str, Any]) -> int | None:
    return _ensemble_parameters(layout, Path(layout.ensemble_dir(teacher.get("method", layout.cfg.distill.teacher))))


def _ensemble_parameters(layout, folder: Path) -> int | None:
    """Sum of the members' parameters (an ensemble runs all of them)."""
    spec = read_json(folder / "ensemble.json") or {}
    total = 0
    for m in spec.get("members", []):
        c = card(Path(layout.member_dir(m.get("name", ""))))
        if c is None or not parameter_count(c):
            return None
        total += parameter_count(c)
    return total or None


def exports(layout) -> Section:
    s = Section(
        "export",
        "ONNX export: parity and sizes",
        "Every exported model was checked against its Keras source on "
        "validation images: the largest probability difference, top-1 agreement and the accuracy change per variant.",
    )
    root = Path(layout.exports_dir())
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    rows = []
    for folder in folders:
        c = card(folder)
        if c is None or c.get("kind") != "export":
            s.missing(_not_run(f"export {folder.name}", folder))
            continue
        for variant, v in (c.get("variants") or {}).items():
            p = v.get("parity", {}) if isinstance(v, dict) else {}
            passed = p.get("passed")
            rows.append(
                [
                    folder.name,
                    variant,
                    v.get("file", ""),
                    megabytes(v.get("bytes")),
                    f"{float(p['max_abs_diff']):.1e}" if "max_abs_diff" in p else "",
                    pct(p.get("top1_agreement")),
                    pct(p.get("accuracy")),
                    f"{100 * float(p['accuracy_change']):+.2f} pts" if p.get("accuracy_change") is not None else "",
                    "passed" if passed else "failed" if passed is False else "reported",
                ]
            )
    if rows:
        s.table(
            ["export", "variant", "file", "size", "max |Δp|", "top-1 agreement", "accuracy", "Δ accuracy", "parity"],
            rows,
        )
    elif not folders:
        s.missing("No exports in this run (the [export] stage is disabled or has not run).")
    return s


BENCH_COLUMNS = (
    ("model", "model"),
    ("engine", "engine"),
    ("provider", "provider"),
    ("variant", "variant"),
    ("batch", "batch"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("throughput_ips", "img/s"),
    ("accuracy", "accuracy"),
    ("model_mb", "MB"),
    ("status", "status"),
)


def benchmark(layout) -> Section:
    s = Section(
        "benchmark",
        "Benchmark: accuracy vs speed",
        "Latency and throughput of each model and engine next to its "
        "accuracy on the same images (from `zoo bench`), with the Pareto front.",
    )
    bench = Path(layout.bench_dir())
    for line in _bench_context(bench / "bench.md"):
        s.text(line)
    shown = s.figure(bench / "pareto.png", "accuracy vs latency and throughput (bench/pareto.png)", "xl")
    doc = read_json(bench / "bench.json")
    rows = (
        doc.get("rows")
        if isinstance(doc, dict) and isinstance(doc.get("rows"), list)
        else read_csv(bench / "bench.csv")
    )
    rows = [r for r in rows if isinstance(r, dict)]
    measured = [r for r in rows if r.get("status", "ok") == "ok"]
    if measured:
        cols = [(k, label) for k, label in BENCH_COLUMNS if k != "status" and any(k in r for r in measured)]
        s.table(
            [label for _, label in cols],
            [[_bench_cell(r, k) for k, _ in cols] for r in measured[:80]],
            "bench/bench.json" + (" (first 80 rows)" if len(measured) > 80 else ""),
        )
    skipped: dict[str, int] = {}
    for r in rows:
        if r.get("status", "ok") != "ok":
            why = f"{r.get('status')}: {r.get('reason') or 'no reason given'}"
            skipped[why] = skipped.get(why, 0) + 1
    for why, n in list(skipped.items())[:6]:
        s.text(f"{n} row(s) {why}")
    if not shown and not rows:
        s.missing(
            f"No benchmark in this run ({bench} has no pareto.png or bench.json): enable [bench] in the config "
            "or run `zoo bench` on the exports."
        )
    return s


def _bench_cell(r: dict[str, Any], k: str) -> str:
    v = r.get(k)
    if k == "accuracy":
        try:
            return pct(float(v))
        except (TypeError, ValueError):
            return ""
    return "" if v is None else _short(str(v))


def _bench_context(md: Path) -> list[str]:
    """The machine and load lines of bench.md: every speed figure needs them next to it."""
    try:
        lines = md.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    keep = [ln for ln in lines if ln.startswith(("**Machine:**", "**Load:**"))]
    return [ln.replace("**", "") for ln in keep]


def _short(v: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f"{f:.4g}" if not f.is_integer() else f"{int(f)}"


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
        c, stored = card(folder), _stored_probs(folder, split)
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

    stored = _stored_probs(folder, split)
    c = card(folder)
    if stored is None or c is None:
        return None
    probs, labels = stored
    path = _figures(layout) / f"{what}_{folder.name}_{split}.png"
    title = f"{name} · {split}" + (" (out-of-fold)" if _oof(folder, split) else "")
    if what == "confusion":
        from sklearn.metrics import confusion_matrix

        m = confusion_matrix(labels, probs.argmax(1), labels=list(range(len(c["classes"]))))
        return plots.confusion_matrix(path, m, c["classes"], title)
    return plots.reliability_diagram(path, labels, probs, title)


def robustness(layout) -> Section:
    s = Section(
        "robustness",
        "Clean vs shifted accuracy",
        "Accuracy on clean images and on copies shifted the way "
        "another lab's images differ (stain, illumination, optics, sensor). Out-of-family results use shift "
        "families the model never trained on.",
    )
    report = Path(layout.report_dir())
    shown = False
    shifted = read_json(report / "shifted.json")
    if isinstance(shifted, dict) and isinstance(shifted.get("members"), dict):
        rows = []
        for name, m in shifted["members"].items():
            c = card(Path(layout.member_dir(name)))
            clean = (c or {}).get("metrics", {}).get("val", {}).get("accuracy")
            acc = m.get("accuracy") if isinstance(m, dict) else None
            rows.append(
                [
                    name,
                    pct(clean),
                    pct(acc),
                    f"{100 * (acc - clean):+.2f} pts" if clean is not None and acc is not None else "",
                ]
            )
        s.table(
            ["member", "val clean", "val shifted", "change"],
            rows,
            f"stain/blur/noise shift at severity {shifted.get('severity')} (the generator the `shift` augmentation also uses: in-family)",
        )
        shown = True
    suites = [
        (name, res)
        for name, folder in artifacts(layout) + _export_artifacts(layout)
        if isinstance(res := read_json(folder / "eval" / "shift_suite.json"), dict)
        and isinstance(res.get("families"), dict)
    ]
    if suites:
        _suite_tables(s, suites)
        shown = True
    # not at module level: it pulls in the suite's plotting stack
    from zoo.shift.report import ADAPTED_STEM, results_file

    plain = dict(suites)
    adapted = [
        (name, plain[name], res)
        for name, folder in artifacts(layout)
        if name in plain and isinstance(res := read_json(folder / results_file(ADAPTED_STEM)), dict)
    ]
    if adapted:
        _adapted_table(s, adapted)
    shown |= s.figure(report / "shift_suite.png", "accuracy per shift family (report/shift_suite.png)", "xl")
    summary = read_json(report / "summary.json")
    if isinstance(summary, list) and summary:
        cols = [
            k
            for k in dict.fromkeys(k for r in summary if isinstance(r, dict) for k in r)
            if k not in ("name", "kind", "folder")
            and "in_sample" not in k
            and any(isinstance(r.get(k), dict) and "accuracy" in r[k] for r in summary)
        ]
        if any(k != "val" and k != "test" for k in cols):
            s.table(
                ["model", *cols],
                [[r.get("name", ""), *[pct((r.get(k) or {}).get("accuracy")) for k in cols]] for r in summary],
                "accuracy per evaluation column (report/summary.json)",
            )
    if not shown:
        s.missing(
            "No shifted evaluation in this run: set [evaluate].shifted in the config, or run "
            "`zoo evaluate RUN --shift-suite` for the per-family suite."
        )
    return s


def _export_artifacts(layout) -> list[tuple[str, Path]]:
    root = Path(layout.exports_dir())
    return [(f"export {p.name}", p) for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []


def _adapted_table(s: Section, rows: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    """As-is against magnification-adapted suite results (``[evaluate] shift_adapt_scale``), per artifact."""

    def acc(r: dict[str, Any], *path: str) -> Any:
        for key in path:
            r = r.get(key) if isinstance(r, dict) else None
        return r

    def pair(a: Any, b: Any) -> str:
        return f"{pct(a, 1)} → {pct(b, 1)}"

    table = [
        [
            name,
            pair(acc(plain, "clean", "accuracy"), acc(res, "clean", "accuracy")),
            pair(plain.get("mean_out_of_family_accuracy"), res.get("mean_out_of_family_accuracy")),
            pair(
                acc(plain, "families", "geometry", "mean_accuracy"), acc(res, "families", "geometry", "mean_accuracy")
            ),
        ]
        for name, plain, res in rows
    ]
    s.table(
        ["model", "clean", "shifted, out-of-family", "geometry"],
        table,
        "shift suite as it is → with each acquisition's magnification read and undone (zoo.magnification, label-free; "
        "eval/shift_suite_adapt_scale.md)",
    )


def _suite_tables(s: Section, suites: list[tuple[str, dict[str, Any]]]) -> None:
    """Summary (clean, out-of-family, in-family, mCE) and accuracy per family from each shift_suite.json."""
    rows = []
    for name, r in suites:
        clean = (r.get("clean") or {}).get("accuracy") if isinstance(r.get("clean"), dict) else None
        oof = r.get("mean_out_of_family_accuracy")
        rows.append(
            [
                name,
                pct(clean),
                pct(oof),
                ", ".join(r.get("out_of_family") or []) or "none",
                pct(r.get("mean_in_family_accuracy")),
                ", ".join(r.get("in_family") or []) or "none",
                num(r.get("mce"), 3),
                num(r.get("mce_out_of_family"), 3),
            ]
        )
    n = suites[0][1].get("n", "?")
    split = (suites[0][1].get("data") or {}).get("split", "") if isinstance(suites[0][1].get("data"), dict) else ""
    s.table(
        [
            "model",
            "clean",
            "shifted, out-of-family",
            "out-of-family families",
            "shifted, in-family",
            "in-family families",
            "mCE",
            "mCE out-of-family",
        ],
        rows,
        f"shift suite on {split or 'the'} split, {n} images per cell; a robustness claim rests on the out-of-family column",
    )
    families = list(dict.fromkeys(f for _, r in suites for f in r["families"]))
    table = []
    for name, r in suites:
        inside = set(r.get("in_family") or [])
        cells = []
        for fam in families:
            v = r["families"].get(fam)
            acc = v.get("mean_accuracy", v.get("accuracy")) if isinstance(v, dict) else None
            cells.append(pct(acc, 1) + (" *" if fam in inside and acc is not None else ""))
        clean = (r.get("clean") or {}).get("accuracy") if isinstance(r.get("clean"), dict) else None
        table.append([name, pct(clean, 1), *cells])
    s.table(
        ["model", "clean", *families],
        table,
        "accuracy per shift family, mean over severities (* in-family: the model's augmentation covers it)",
    )


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
    stored = _stored_probs(folder, split)
    size = int(((card(folder) or {}).get("input") or {}).get("image_size") or layout.cfg.data.image_size)
    dataset, why = _dataset(layout, size)  # the images the model saw: members may train at their own size
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

    out = _figures(layout)
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
        if card(folder) is not None and _stored_probs(folder, split) is not None:
            return name, folder
    best: tuple[float, str, Path | None] = (-1.0, "", None)
    for name, folder in members(layout):
        c = card(folder)
        acc = (c or {}).get("metrics", {}).get("val", {}).get("accuracy")
        if acc is not None and _stored_probs(folder, split) is not None and acc > best[0]:
            best = (acc, name, folder)
    return best[1], best[2]


# ----------------------------------------------------------------------------- shared
def _dataset(layout, size: int | None = None):
    """``(dataset, None)`` or ``(None, reason)``: the report still renders when the data has moved."""
    try:
        if size is not None and size != layout.cfg.data.image_size and hasattr(layout, "dataset_at"):
            return layout.dataset_at(size), None
        return layout.dataset, None
    except ZooError as exc:
        return None, str(exc)


def _figures(layout) -> Path:
    path = Path(layout.report_dir()) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _montage(layout, dataset) -> Path:
    from zoo.curate.report import montage

    part = dataset.split("train")
    rng = np.random.default_rng(0)
    rows = []
    for k, cls in enumerate(dataset.class_names):
        idx = np.flatnonzero(part.labels == k)
        pick = rng.choice(idx, size=min(MONTAGE_PER_CLASS, len(idx)), replace=False) if len(idx) else []
        rows.append((cls, [(part.images[i], "") for i in pick]))
    return montage(_figures(layout) / "montage.png", rows, cell=1.1)
