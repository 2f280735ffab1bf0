"""Training throughput and peak memory of every registered zoo member.

For each member and image size, a fresh subprocess builds the member (8 classes), compiles it
(AdamW, categorical cross-entropy, Keras' default ``jit_compile="auto"`` unless ``--jit``),
runs ``--warmup`` train steps (tracing / XLA compilation) and then up to ``--steps`` timed
``train_on_batch`` steps on one fixed random batch (forward + backward + update), stopping
early once ``--budget-s`` seconds of timed steps are spent (at least one step always runs).
One process per measurement keeps peak-RSS numbers separate; the parent also watches each
child's RSS and kills it above ``--max-rss-gb`` so a large member cannot starve a shared
machine (recorded as "aborted").

CPU sizes default to 64 and 96 px; on a GPU (detected in a subprocess) the ``--gpu-sizes``
(default 224) are measured too, with TF's peak device memory. Results are merged into
``benchmarks/results/member_throughput.json`` (keyed by member, size and device) and rendered to
``member_throughput.md`` with the machine (platform, CPU model, cores) and the load at the
time, since on a shared CPU the numbers are only comparable within one run.

    python benchmarks/member_throughput.py --members 'convnext_*' --steps 3 --note "shared CPU"
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import one_line  # benchmarks/machine.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "member_throughput"
NUM_CLASSES = 8


# ----------------------------------------------------------------------------- child: one measurement
def _child(job: dict) -> dict:
    import resource

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if job["device"] == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(REPO))
    import zoo.models  # noqa: F401
    from zoo.registry import create_model

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    keras.utils.set_random_seed(0)
    base_rss = rss_mb()
    size, batch = job["image_size"], job["batch"]
    model = create_model(job["member"], NUM_CLASSES, image_size=size)
    jit = {"auto": "auto", "on": True, "off": False}[job["jit"]]
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy", jit_compile=jit)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    y = tf.constant(np.eye(NUM_CLASSES, dtype="float32")[rng.integers(0, NUM_CLASSES, batch)])

    t0 = time.perf_counter()
    for _ in range(job["warmup"]):
        model.train_on_batch(x, y)
    warmup_s = time.perf_counter() - t0
    times: list[float] = []
    while len(times) < job["steps"] and (not times or sum(times) < job["budget_s"]):
        t = time.perf_counter()
        loss = model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    step = float(np.median(times))
    out = {
        "params": int(model.count_params()),
        "jit_compile": bool(getattr(model, "jit_compile", False)),
        "warmup_steps": job["warmup"],
        "warmup_s": round(warmup_s, 2),
        "timed_steps": len(times),
        "step_s_median": round(step, 4),
        "images_per_s": round(batch / step, 2),
        "loss_finite": bool(np.isfinite(float(np.asarray(loss).ravel()[0]))),
        "peak_rss_mb": round(rss_mb(), 1),
        "rss_before_build_mb": round(base_rss, 1),
    }
    if job["device"] == "gpu":
        info = tf.config.experimental.get_memory_info("GPU:0")
        out["peak_gpu_mem_mb"] = round(info["peak"] / 2**20, 1)
        out["gpu"] = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
            "device_name"
        )
    return out


def _detect_gpu() -> list[str]:
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import json, tensorflow as tf; "
        "print(json.dumps([d.name for d in tf.config.list_physical_devices('GPU')]))"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return []


# ----------------------------------------------------------------------------- parent
def machine() -> dict:
    from machine import describe

    return describe()


def conditions() -> dict:
    """How busy the machine is right now (see benchmarks/machine.py)."""
    from machine import conditions as now

    return now()


def run_job(job: dict, max_rss_gb: float, timeout_s: float) -> dict:
    """Run one measurement in a child, killing it above ``max_rss_gb`` of RSS or ``timeout_s``."""
    import psutil

    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    ps = psutil.Process(proc.pid)
    peak, reason, t0 = 0.0, None, time.monotonic()
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss / 2**30)
        except psutil.Error:
            pass
        if peak > max_rss_gb:
            reason = f"aborted: RSS above {max_rss_gb} GB"
        elif time.monotonic() - t0 > timeout_s:
            reason = f"aborted: over {timeout_s:.0f} s"
        if reason:
            proc.kill()
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    if reason:
        return {"status": reason, "observed_peak_rss_mb": round(peak * 1024, 1)}
    if proc.returncode != 0:
        return {"status": f"failed (exit {proc.returncode})", "error": err.strip().splitlines()[-1:] or ["?"]}
    return {"status": "ok", **json.loads(out.strip().splitlines()[-1])}


def render_markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# Member training throughput",
        "",
        "Generated by `benchmarks/member_throughput.py`: forward + backward + AdamW update with",
        f"`train_on_batch` on one fixed random batch, {NUM_CLASSES} classes, after warm-up steps (tracing / XLA",
        "compilation); images/s = batch / median step time. Peak RSS is the measuring process's",
        "maximum resident set (TensorFlow runtime included; `rss_before_build` in the JSON is the",
        'part before the model existed). XLA: Keras\' `jit_compile="auto"` turns XLA off on CPU-only',
        "machines and on for GPUs; `--jit on|off` overrides it. On a shared CPU, compare rows of one run only.",
        "",
        f"**Machine:** {one_line(m)}; Python {m['python']}.",
        "",
    ]
    for run in doc.get("runs", []):
        c0, c1 = run["conditions_before"], run["conditions_after"]
        lines.append(
            f"- Run {c0['time']}: load average {c0['loadavg_1_5_15']} -> {c1['loadavg_1_5_15']}; "
            f"{len(c0['other_busy_processes'])} other processes using > 20% CPU at the start. {run.get('note', '')}".rstrip()
        )
    lines += [
        "",
        "| member | size | device | params (M) | batch | timed steps | s/step | images/s | peak RSS (MB) | peak GPU (MB) | XLA | status |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in sorted(doc["results"], key=lambda r: (r["device"], r["member"], r["image_size"])):
        ok = r["status"] == "ok"

        def f(k, fmt="{}", r=r, ok=ok):
            return fmt.format(r[k]) if ok and k in r else "-"

        params = f"{r['params'] / 1e6:.2f}" if ok else "-"
        lines.append(
            f"| {r['member']} | {r['image_size']} | {r['device']} | {params} | {r['batch']} | {f('timed_steps')} | "
            f"{f('step_s_median', '{:.3f}')} | {f('images_per_s', '{:.1f}')} | "
            f"{f('peak_rss_mb', '{:.0f}') if ok else r.get('observed_peak_rss_mb', '-')} | {f('peak_gpu_mem_mb', '{:.0f}')} | "
            f"{'on' if ok and r.get('jit_compile') else ('off' if ok else '-')} | {r['status']} |"
        )
    skipped = doc.get("skipped")
    if skipped:
        lines += ["", f"Skipped: {skipped}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", default="*", help="comma-separated shell patterns of member names (default: all)")
    ap.add_argument("--sizes", default="64,96", help="CPU image sizes (default 64,96)")
    ap.add_argument("--gpu-sizes", default="224", help="GPU image sizes when a GPU is present (default 224)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps at most (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    ap.add_argument("--budget-s", type=float, default=60.0, help="stop timing after this many seconds (min 1 step)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="kill a measurement after this long")
    ap.add_argument(
        "--max-rss-gb", type=float, default=None, help="kill a measurement above this RSS (default: 60%% of available)"
    )
    ap.add_argument("--jit", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--no-gpu", action="store_true", help="do not look for a GPU")
    ap.add_argument("--note", default="", help="free text recorded with this run (e.g. machine contention)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output path without suffix")
    ap.add_argument("--fresh", action="store_true", help="replace the results file instead of merging into it")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0

    import psutil

    sys.path.insert(0, str(REPO))
    from zoo.artifacts import write_json, write_text
    from zoo.registry import list_models

    patterns = [p.strip() for p in args.members.split(",") if p.strip()]
    members = [n for n in list_models() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if not members:
        print(f"no registered member matches {args.members!r}", file=sys.stderr)
        return 2
    max_rss = args.max_rss_gb or round(0.6 * psutil.virtual_memory().available / 2**30, 1)
    jobs = [("cpu", s) for s in (int(v) for v in args.sizes.split(",") if v)]
    skipped = None
    gpus = [] if args.no_gpu else _detect_gpu()
    if gpus:
        jobs += [("gpu", s) for s in (int(v) for v in args.gpu_sizes.split(",") if v)]
    else:
        skipped = f"GPU sizes {args.gpu_sizes} px: no GPU visible to TensorFlow on this machine"

    out_json = args.out.with_suffix(".json")
    doc = {"machine": machine(), "runs": [], "results": []}
    if out_json.exists() and not args.fresh:
        old = json.loads(out_json.read_text())
        if old.get("machine", {}).get("cpu") == doc["machine"]["cpu"]:
            doc["runs"], doc["results"] = old.get("runs", []), old.get("results", [])

    before = conditions()
    settings = {
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "budget_s": args.budget_s,
        "jit": args.jit,
    }
    new = []
    for name in members:
        for device, size in jobs:
            job = {"member": name, "image_size": size, "device": device, **settings}
            t = time.monotonic()
            res = run_job(job, max_rss, args.timeout_s)
            entry = {
                "member": name,
                "image_size": size,
                "device": device,
                "batch": args.batch,
                **res,
                "wall_s": round(time.monotonic() - t, 1),
                "run": before["time"],
            }
            new.append(entry)
            print(
                f"{name:16s} {size:4d}px {device}: {res.get('images_per_s', '-')} img/s, "
                f"peak RSS {res.get('peak_rss_mb', res.get('observed_peak_rss_mb', '-'))} MB [{res['status']}]",
                flush=True,
            )
    after = conditions()
    keys = {(e["member"], e["image_size"], e["device"]) for e in new}
    doc["results"] = [r for r in doc["results"] if (r["member"], r["image_size"], r["device"]) not in keys] + new
    doc["runs"].append(
        {
            "conditions_before": before,
            "conditions_after": after,
            "settings": settings,
            "max_rss_gb": max_rss,
            "members": members,
            "note": args.note,
        }
    )
    doc["skipped"] = skipped
    write_json(out_json, doc)
    write_text(args.out.with_suffix(".md"), render_markdown(doc))
    print(f"wrote {out_json} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
