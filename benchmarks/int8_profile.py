"""Where the int8 time goes: round-robin throughput of several ONNX files and ONNX Runtime's kernel-time profile.

Files are timed in turns (each file ``--runs`` batches per round, ``--rounds`` rounds, median),
so a load that drifts during the run hits every file alike; then each file runs ``--profile-runs``
batches with ``enable_profiling`` and the kernel time is summed by op type. This is the profile
behind the int8 recipe in export/quantize.py and the AveragePool folding in export/optimize.py.

    python benchmarks/int8_profile.py EXPORT/model.onnx EXPORT/model.int8.onnx OLD.int8.onnx --batch 128 --tag custom_cnn
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def session(path: Path, threads: int, profile_dir: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(profile_dir) / path.stem)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help=".onnx files; the first is the baseline")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile-runs", type=int, default=5)
    ap.add_argument("--tag", default="")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from export.bench.graph import count_macs, inspect_graph
    from export.bench.machine import conditions, describe, gemm_peak, one_line
    from zoo.artifacts import write_json, write_text

    before = conditions()
    peak = gemm_peak(args.threads)
    sessions = {f: session(f, args.threads) for f in args.files}
    size = sessions[args.files[0]].get_inputs()[0].shape[1]
    name = sessions[args.files[0]].get_inputs()[0].name
    x = np.random.default_rng(0).uniform(0, 255, (args.batch, size, size, 3)).astype(np.float32)
    times: dict[Path, list[float]] = {f: [] for f in args.files}
    for s in sessions.values():
        s.run(None, {name: x})
    for _ in range(args.rounds):
        for f, s in sessions.items():
            for _ in range(args.runs):
                t = time.perf_counter()
                s.run(None, {name: x})
                times[f].append(time.perf_counter() - t)
    rows = []
    base = float(np.median(times[args.files[0]]))
    with tempfile.TemporaryDirectory() as tmp:
        for f in args.files:
            s = session(f, args.threads, tmp)
            for _ in range(args.profile_runs):
                s.run(None, {name: x})
            by: Counter = Counter()
            for e in json.loads(Path(s.end_profiling()).read_text()):
                if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                    by[e["args"]["op_name"]] += e["dur"]
            total = sum(by.values()) or 1
            med = float(np.median(times[f]))
            macs = count_macs(f)["macs"]
            g = inspect_graph(f)
            rows.append(
                {
                    "file": str(f),
                    "images_per_s": round(args.batch / med, 1),
                    "speedup_vs_first": round(base / med, 2),
                    "macs_per_image": macs,
                    "gmacs_per_s": round(macs * args.batch / med / 1e9, 2),
                    "kernel_time_share": {k: round(v / total, 3) for k, v in by.most_common()},
                    "quant_format": g["quant_format"],
                    "nodes": g["nodes"],
                    "ops": g["ops"],
                }
            )
    doc = {
        "machine": describe(),
        "conditions": {"before": before, "after": conditions()},
        "gemm_peak": peak,
        "settings": vars(args) | {"files": [str(f) for f in args.files]},
        "rows": rows,
    }
    lines = [
        f"# int8 profile{(' — ' + args.tag) if args.tag else ''}",
        "",
        f"**Machine:** {one_line(doc['machine'])}. **Load:** {before['time']}: load average {before['loadavg_1_5_15']} -> "
        f"{doc['conditions']['after']['loadavg_1_5_15']}. GEMM peak now: fp32 {peak['fp32_gmacs']}, int8 {peak['int8_gmacs']} GMAC/s.",
        f"Batch {args.batch}, {args.threads} threads, median of {args.rounds}×{args.runs} round-robin runs. {args.note}",
        "",
        "| file | format | img/s | × first | MMAC/img | GMAC/s | kernel time by op (top 6) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        top = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(r["kernel_time_share"].items())[:6])
        lines.append(
            f"| `{Path(r['file']).name}` | {r['quant_format'] or 'fp32'} | {r['images_per_s']:.0f} | {r['speedup_vs_first']:.2f} | "
            f"{r['macs_per_image'] / 1e6:.1f} | {r['gmacs_per_s']:.1f} | {top} |"
        )
    stem = "int8_profile" + (f"-{args.tag}" if args.tag else "")
    write_json(RESULTS / f"{stem}.json", doc)
    write_text(RESULTS / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
