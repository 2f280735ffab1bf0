"""Clean against shifted accuracy: the shifted val copy and the shift suite, in- and out-of-family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.report.render import Section, num, pct
from zoo.report.sections.reading import (
    artifacts,
    card,
    read_json,
)


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
