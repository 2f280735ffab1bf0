"""The export and benchmark sections: parity and sizes of the ONNX files, accuracy against speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.report.render import Section, megabytes, pct
from zoo.report.sections.reading import (
    card,
    not_run,
    read_csv,
    read_json,
)


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
            s.missing(not_run(f"export {folder.name}", folder))
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
