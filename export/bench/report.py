"""``zoo bench`` results on disk: bench.json (everything), bench.csv (one row per measurement, every column),
bench.md (the table people read, with the machine and its load) and pareto.png (accuracy against
latency and throughput, with the Pareto front of the rows that ran)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from export.bench import machine
from zoo.artifacts import write_json, write_text
from zoo.errors import ZooError

FILES = ("bench.json", "bench.md", "bench.csv", "pareto.png")


def check_out(out: Path, force: bool) -> None:
    """``out`` must be new, empty, or a previous ``zoo bench`` output (replaced only with ``force``)."""
    if out.is_file():
        raise ZooError(f"--out {out}: give a folder, not a file")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / "bench.json").is_file():
        raise ZooError(f"--out {out}: folder exists and was not written by `zoo bench`; choose a new folder")
    if not force:
        raise ZooError(f"--out {out}: holds an earlier benchmark; pass --force to replace it")


def _label(r: dict) -> str:
    eng = r["engine"] if r["engine"] != "ort" else f"ort-{r['provider']}"
    return f"{r['model']} {eng} {r['variant']}"


def _fmt(v, digits: int = 2) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def markdown(doc: dict) -> str:
    m, c, s, pk = doc["machine"], doc["conditions"], doc["settings"], doc["gemm_peak"]
    lines = [
        "# zoo bench",
        "",
        f"**Machine:** {machine.one_line(m)}; ORT providers: {', '.join(m['onnxruntime_providers'])}.",
        f"**Load:** {c['before']['time']}: load average {c['before']['loadavg_1_5_15']} -> {c['after']['loadavg_1_5_15']}, "
        f"{len(c['before']['other_busy_processes'])} other process(es) above 20% CPU at the start.",
        f"**GEMM peak** (ORT, {pk.get('n', '?')}³, threads {pk.get('threads', '?')}): fp32 {pk.get('fp32_gmacs')} GMAC/s, "
        f"int8 (u8×s8) {pk.get('int8_gmacs')} GMAC/s."
        if pk
        else "**GEMM peak:** not measured (no CPU rows).",
        f"**Settings:** batch sizes {s['batch_sizes']}, threads {s['threads']}, {s['warmup']} warm-up + up to "
        f"{s['iterations']} timed runs (≤ {s['max_seconds']} s) per row; graph optimisation `{s['graph_optimization_level']}`; "
        + (f"accuracy on `{s['data']}` split `{s['split']}`." if s["data"] else "accuracy from the cards (no --data)."),
        "",
    ]
    if doc.get("note"):
        lines += [f"Note: {doc['note']}", ""]
    lines += [
        "| model | engine | provider | variant | batch | p50 ms | p90 ms | p99 ms | img/s | MMAC/img | GMAC/s | % peak | "
        "accuracy | bal. acc | macro F1 | NLL | ECE | start s | peak RSS MB | MB | status |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["rows"]:
        macs = None if r["macs_per_image"] is None else r["macs_per_image"] / 1e6
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["engine"],
                    r["provider"],
                    r["variant"],
                    _fmt(r["batch"]),
                    _fmt(r["p50_ms"], 3),
                    _fmt(r["p90_ms"], 3),
                    _fmt(r["p99_ms"], 3),
                    _fmt(r["throughput_ips"], 0),
                    _fmt(macs, 1),
                    _fmt(r["gmacs_per_s"], 1),
                    _fmt(r["pct_of_peak"], 0),
                    _fmt(r["accuracy"], 4),
                    _fmt(r["balanced_accuracy"], 4),
                    _fmt(r["macro_f1"], 4),
                    _fmt(r["nll"], 4),
                    _fmt(r["ece"], 4),
                    _fmt(r["session_start_s"], 2),
                    _fmt(r["peak_rss_mb"], 0),
                    _fmt(r["model_mb"], 2),
                    status.replace("|", "/"),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "## Graphs",
        "",
        "| model | variant | nodes | Transpose | quant format | compute ops left in float |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, variants in doc["graphs"].items():
        for v, g in variants.items():
            lines.append(
                f"| {name} | {v} | {g['nodes']} | {g['transposes']} | {g['quant_format'] or ''} | "
                f"{len(g['float_compute_ops'])} |"
            )
    return "\n".join(lines) + "\n"


def csv_text(doc: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=doc["columns"], lineterminator="\n")
    w.writeheader()
    for r in doc["rows"]:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in doc["columns"]})
    return buf.getvalue()


def _front(points: list[tuple[float, float]], lower_x_better: bool) -> list[tuple[float, float]]:
    """Points not dominated (higher accuracy and better x), sorted by x."""
    pts = sorted(points, key=lambda p: (p[0] if lower_x_better else -p[0], -p[1]))
    front, best = [], float("-inf")
    for x, y in pts:
        if y > best:
            front.append((x, y))
            best = y
    return front


def pareto_png(path: Path, doc: dict) -> Path:
    from zoo import plots

    plt = plots.plt
    ok = [r for r in doc["rows"] if r["status"] == "ok" and r["throughput_ips"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    specs = (
        (axes[0], "ms_per_image", "latency per image (ms, p50 / batch; log)", True),
        (axes[1], "throughput_ips", "throughput (images/s; log)", False),
    )
    labels = sorted({_label(r) for r in ok})
    cmap = plt.get_cmap("tab20")
    colour = {lab: cmap(i % 20) for i, lab in enumerate(labels)}
    batches = sorted({r["batch"] for r in ok})
    markers = dict(zip(batches, "o^sDvP*Xh"))
    have_acc = any(r["accuracy"] is not None for r in ok)
    for ax, key, xlabel, lower in specs:
        pts = []
        for r in ok:
            y = r["accuracy"] if have_acc else 0.0
            if y is None:
                continue
            ax.scatter(
                r[key],
                y,
                color=colour[_label(r)],
                marker=markers.get(r["batch"], "o"),
                s=40,
                edgecolor="k",
                linewidth=0.4,
            )
            pts.append((r[key], y))
        front = _front(pts, lower)
        if front:
            ax.step(
                [p[0] for p in front],
                [p[1] for p in front],
                where="post" if lower else "pre",
                color="gray",
                ls="--",
                lw=1,
                label="Pareto front",
            )
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy" if have_acc else "(no accuracy: pass --data)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colour[lab], marker="o", ls="", label=lab) for lab in labels]
    handles += [
        plt.Line2D([], [], color="k", marker=markers[b], ls="", label=f"batch {b}", mfc="none") for b in batches
    ]
    if handles:
        axes[1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if not ok:
        for ax in axes:
            ax.text(0.5, 0.5, "no row ran", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"accuracy vs speed — {machine.one_line(doc['machine'])}", fontsize=9)
    return plots.save_figure(fig, path)


def write(out: Path, doc: dict) -> Path:
    """The four result files; bench.json last, so its presence marks a finished benchmark."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "bench.csv", csv_text(doc))
    write_text(out / "bench.md", markdown(doc))
    pareto_png(out / "pareto.png", doc)
    write_json(out / "bench.json", doc)
    return out
