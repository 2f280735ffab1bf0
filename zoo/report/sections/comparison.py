"""Members, ensembles and the student compared: per-member metrics, the ensembles' comparison tables
with confidence intervals and McNemar tests, and what distillation kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.artifacts import parameter_count
from zoo.report.render import Section, count, num, pct
from zoo.report.sections.reading import (
    card,
    complete,
    ensemble_parameters,
    ensembles,
    members,
    not_run,
    read_json,
    report_split,
    trained,
)


def member_metrics(layout) -> Section:
    s = Section(
        "members",
        "Per-member metrics",
        "Each member (and the student) on every split it was scored on: "
        "accuracy, balanced accuracy, macro F1, ROC AUC (one-vs-rest), NLL and expected calibration error.",
    )
    rows = []
    for name, _, c in complete(s, trained(layout)):
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
    for name, folder, c in complete(s, ens):
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
        s.missing(not_run("student", folder))
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
    return ensemble_parameters(layout, Path(layout.ensemble_dir(teacher.get("method", layout.cfg.distill.teacher))))
