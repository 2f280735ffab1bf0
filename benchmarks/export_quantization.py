"""Keras vs ONNX fp32 vs int8 vs fp16: accuracy, ONNX Runtime CPU latency and file size.

For each run or ensemble folder given, the model is exported (``export.convert.export_model``
with fp16 and static int8, calibrated on ``--calibration-size`` training images) and measured
on the whole ``--split`` of ``--data`` (default: ../shared/data/pbc128 val, at the models' size, e.g. 64 px):

- accuracy of Keras (the parity reference) and of each ONNX file, and the change in points;
- ORT CPU latency at batch 1 and batch 64: median (and p90) wall time over ``--repeats`` runs
  after ``--warmup`` runs, one session per file, ``--threads`` intra-op threads (0 = ORT default);
- file size.

Target: int8 accuracy at most 0.3 points below fp32. Results go to
``benchmarks/results/export_quantization[-TAG].json`` and ``.md`` with the machine (CPU model,
cores, ORT version) and its load at the time: on a shared CPU compare rows of one run only.

    python benchmarks/export_quantization.py runs/pbc-cpu/members/custom_cnn runs/pbc-cpu/ensembles/vote
    python benchmarks/export_quantization.py RUN --data synthetic:800 --image-size 32 --tag smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import one_line  # benchmarks/machine.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "pbc128"
VARIANTS = ("fp32", "int8", "fp16")
TARGET_INT8_DROP_POINTS = 0.3

log = logging.getLogger("export_quantization")


def machine() -> dict:
    import onnxruntime as ort
    from machine import describe

    return {**describe(), "onnxruntime": ort.__version__}


def conditions() -> dict:
    from machine import conditions as now

    return now()


def latency(path: Path, image_size: int, batch: int, repeats: int, warmup: int, threads: int) -> dict:
    """Median/p90 wall time (ms) of one ORT CPU ``run`` at ``batch`` images."""
    import numpy as np

    from export.parity import session

    sess = session(path, ["CPUExecutionProvider"], threads=threads)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(0, 255, (batch, image_size, image_size, 3)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[min(len(times) - 1, int(0.9 * len(times)))], 3),
        "per_image_ms": round(statistics.median(times) / batch, 4),
    }


def measure(source: Path, args, export_root: Path) -> dict:
    from export.convert import export_model
    from zoo.artifacts import read_card

    out = export_root / source.name
    t = time.time()
    export_model(
        source,
        out,
        opset=args.opset,
        dtype="fp16",
        quantize="int8",
        data=args.data_source,
        split=args.split,
        limit=args.limit or None,
        calibration_size=args.calibration_size,
        calibration_method=args.calibration_method,
        force=True,
    )
    export_s = time.time() - t
    card = read_card(out)
    size = int(card["input"]["image_size"])
    fp32 = card["parity"]["fp32"]
    row = {
        "source": str(source),
        "name": card["name"],
        "kind": card["source"]["kind"],
        "image_size": size,
        "images": fp32["images"],
        "data": card["data"],
        "export_seconds": round(export_s, 1),
        "keras_accuracy": fp32.get("accuracy_reference"),
        "variants": {},
    }
    for name in VARIANTS:
        v = card["variants"].get(name)
        if v is None:
            continue
        rep = v["parity"]
        entry = {
            "file": v["file"],
            "mb": round(v["bytes"] / 1e6, 3),
            "accuracy": rep.get("accuracy"),
            "max_abs_diff_vs_keras": rep["max_abs_diff"],
            "top1_agreement_vs_keras": rep["top1_agreement"],
        }
        if name != "fp32" and "vs_fp32" in rep:
            entry["accuracy_change_vs_fp32_points"] = (
                None
                if rep["vs_fp32"].get("accuracy_change") is None
                else round(100 * rep["vs_fp32"]["accuracy_change"], 3)
            )
        for b in args.batches:
            entry[f"latency_b{b}"] = latency(out / v["file"], size, b, args.repeats, args.warmup, args.threads)
        row["variants"][name] = entry
    drop = row["variants"].get("int8", {}).get("accuracy_change_vs_fp32_points")
    row["int8_meets_target"] = None if drop is None else bool(drop >= -TARGET_INT8_DROP_POINTS)
    log.info(
        "%s: keras %.4f, fp32 %.4f, int8 %s",
        row["name"],
        row["keras_accuracy"] or float("nan"),
        row["variants"]["fp32"]["accuracy"] or float("nan"),
        row["variants"].get("int8", {}).get("accuracy"),
    )
    return row


def render_markdown(doc: dict) -> str:
    m, c = doc["machine"], doc["conditions"]
    lines = [
        "# ONNX export: accuracy, CPU latency and size (Keras vs fp32 vs int8 vs fp16)",
        "",
        f"Machine: {one_line(m)}; onnxruntime {m['onnxruntime']} (CPU provider). "
        f"Run {c['time']}, load average {c['loadavg_1_5_15']}; ORT intra-op threads: {doc['settings']['threads'] or 'default'}.",
        f"Data: `{doc['settings']['data']}` split `{doc['settings']['split']}`. Latency: median of {doc['settings']['repeats']} runs "
        f"after {doc['settings']['warmup']} warm-up runs, one session per file. Target: int8 ≤ {TARGET_INT8_DROP_POINTS} points below fp32.",
        "",
    ]
    if doc.get("note"):
        lines += [f"Note: {doc['note']}", ""]
    batches = doc["settings"]["batches"]
    head = (
        "| model | kind | px | images | variant | accuracy | Δ vs fp32 (pts) | max \\|Δp\\| vs Keras | "
        + " | ".join(f"ms @ b{b}" for b in batches)
        + " | MB |"
    )
    lines += [head, "|" + "---|" * (9 + len(batches))]
    for r in doc["results"]:
        keras = r["keras_accuracy"]
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['image_size']} | {r['images']} | Keras | {keras:.4f} | | | "
            + " | ".join("" for _ in batches)
            + " | |"
        )
        for name, v in r["variants"].items():
            acc = "" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
            d = v.get("accuracy_change_vs_fp32_points")
            lines.append(
                f"| {r['name']} | {r['kind']} | {r['image_size']} | {r['images']} | ONNX {name} | {acc} | "
                f"{'' if d is None else f'{d:+.2f}'} | {v['max_abs_diff_vs_keras']:.1e} | "
                + " | ".join(f"{v[f'latency_b{b}']['median_ms']:.2f}" for b in batches)
                + f" | {v['mb']:.2f} |"
            )
    lines += [
        "",
        "int8 target met: "
        + ", ".join(f"{r['name']} {'yes' if r['int8_meets_target'] else 'NO'}" for r in doc["results"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", type=Path, help="run (member/student) or ensemble folders")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="data source (default ../shared/data/pbc128)")
    ap.add_argument("--image-size", type=int, help="the models' input size (default: from the first source's card)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0, help="at most N evaluation images (0 = the whole split)")
    ap.add_argument("--calibration-size", type=int, default=256)
    ap.add_argument("--calibration-method", default="minmax", choices=("minmax", "entropy", "percentile"))
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = ORT default)")
    ap.add_argument("--keep-exports", type=Path, help="write the export folders here (default: a temporary folder)")
    ap.add_argument("--tag", default="", help="suffix of the results files (export_quantization-TAG.json)")
    ap.add_argument("--note", default="", help="free text recorded with the results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO))

    from zoo.artifacts import read_card
    from zoo.data import load_dataset
    from zoo.errors import ZooError

    try:
        if args.image_size is None:
            args.image_size = int(read_card(args.sources[0], verify=False)["input"]["image_size"])
        args.data_source = load_dataset(args.data, args.image_size)  # loaded once for every source
    except ZooError as exc:
        print(f"export_quantization: {exc}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-export-") as tmp:
        root = args.keep_exports or Path(tmp)
        for src in args.sources:
            try:
                results.append(measure(src, args, root))
            except ZooError as exc:
                print(f"export_quantization: {src}: {exc}", file=sys.stderr)
                return 2
    doc = {
        "machine": machine(),
        "conditions": conditions(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "data",
                "image_size",
                "split",
                "limit",
                "calibration_size",
                "calibration_method",
                "opset",
                "batches",
                "repeats",
                "warmup",
                "threads",
            )
        },
        "note": args.note,
        "target_int8_drop_points": TARGET_INT8_DROP_POINTS,
        "results": results,
    }
    stem = "export_quantization" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(render_markdown(doc))
    print(render_markdown(doc))
    print(f"results: {RESULTS / stem}.json / .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
