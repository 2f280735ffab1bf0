"""GPU benchmark in one go (called by ``benchmarks/gpu.sh``): ONNX Runtime CUDA/TensorRT and TF training throughput.

Steps, each recorded in ``<out>/gpu.json`` / ``gpu.md`` with the machine (and, when a step
cannot run, the reason it was skipped):

1. **models**: the run/ensemble/export folders given with ``--models``; without any, builds
   what it benches — a ``custom_cnn`` member trained for ``--epochs`` on ``--data`` (default
   ``synthetic:1200``, 64 px) and exported with fp16 and int8 (data and models are never committed).
2. **zoo bench** on them: ORT providers cuda, tensorrt and cpu, variants fp32/fp16/int8, batch
   sizes 1 and 128, IO binding on the GPU providers (inputs and outputs stay on the device),
   into ``<out>/bench/``. Missing providers are skipped rows.
3. **TF training throughput** of ConvNeXt Tiny/Small/Base/Large at 224 px with mixed precision
   (``mixed_float16``) on synthetic tensors: one subprocess per model, warm-up steps (tracing /
   XLA) then timed ``train_on_batch`` steps; images/s and peak GPU memory. Needs a GPU visible
   to TensorFlow; skipped otherwise (``--skip-gpu`` skips it on purpose).

    python benchmarks/gpu_bench.py                              # on a GPU machine (after gpu.sh's install)
    python benchmarks/gpu_bench.py --skip-gpu --models EXPORT   # CPU: the GPU steps are skipped cleanly
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "gpu"
CONVNEXTS = ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large")
BATCH = {"convnext_tiny": 128, "convnext_small": 96, "convnext_base": 64, "convnext_large": 32}


def _py(*args: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def tf_gpus() -> list[str]:
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import json, tensorflow as tf; "
        "print(json.dumps([d.name for d in tf.config.list_physical_devices('GPU')]))"
    )
    try:
        proc = _py("-c", code, timeout=300)
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return []


def build_models(work: Path, data: str, epochs: int) -> list[Path]:
    """Train a custom_cnn member for a few epochs and export it with fp16 and int8 (what the bench needs)."""
    run, exp = work / "custom_cnn", work / "export-custom_cnn"
    steps = [
        (
            "train",
            [
                "-m",
                "zoo.cli",
                "train",
                "custom_cnn",
                "--data",
                data,
                "--image-size",
                "64",
                "--epochs",
                str(epochs),
                "--batch-size",
                "128",
                "--out",
                str(run),
            ],
        ),
        (
            "export",
            [
                "-m",
                "zoo.cli",
                "export",
                str(run),
                "--out",
                str(exp),
                "--dtype",
                "fp16",
                "--quantize",
                "int8",
                "--limit",
                "256",
                "--calibration-size",
                "128",
            ],
        ),
    ]
    for what, args in steps:
        proc = _py(*args, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"gpu_bench: {what} failed:\n{proc.stderr[-2000:]}")
    return [exp]


def _child(job: dict) -> dict:
    """One ConvNeXt training-throughput measurement (runs in its own process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(REPO))
    import zoo.models  # noqa: F401
    from zoo.registry import create_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    size, batch = job["image_size"], job["batch"]
    model = create_model(job["member"], 8, image_size=size)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    y = tf.constant(np.eye(8, dtype="float32")[rng.integers(0, 8, batch)])
    t0 = time.perf_counter()
    for _ in range(job["warmup"]):
        model.train_on_batch(x, y)
    warm = time.perf_counter() - t0
    times = []
    while len(times) < job["steps"] and (not times or sum(times) < job["budget_s"]):
        t = time.perf_counter()
        loss = model.train_on_batch(x, y)
        float(np.asarray(loss).ravel()[0])  # waits for the step
        times.append(time.perf_counter() - t)
    step = float(np.median(times))
    info = tf.config.experimental.get_memory_info("GPU:0")
    return {
        "params": int(model.count_params()),
        "batch": batch,
        "image_size": size,
        "precision": "mixed_float16",
        "jit_compile": bool(getattr(model, "jit_compile", False)),
        "warmup_s": round(warm, 1),
        "timed_steps": len(times),
        "step_s_median": round(step, 4),
        "images_per_s": round(batch / step, 1),
        "peak_gpu_mem_mb": round(info["peak"] / 2**20, 1),
    }


def convnext_throughput(size: int, steps: int, budget_s: float, timeout_s: float) -> list[dict]:
    rows = []
    for name in CONVNEXTS:
        job = {
            "member": name,
            "image_size": size,
            "batch": BATCH[name],
            "warmup": 3,
            "steps": steps,
            "budget_s": budget_s,
        }
        try:
            proc = _py(str(Path(__file__).resolve()), "--child", json.dumps(job), timeout=timeout_s)
            if proc.returncode == 0:
                rows.append({"member": name, "status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])})
            else:
                rows.append({"member": name, "status": "failed", "error": proc.stderr.strip().splitlines()[-1:]})
        except subprocess.TimeoutExpired:
            rows.append({"member": name, "status": f"aborted: over {timeout_s:.0f} s"})
        print(f"{name}: {rows[-1].get('images_per_s', rows[-1]['status'])}", flush=True)
    return rows


def render(doc: dict) -> str:
    sys.path.insert(0, str(REPO))
    from export.bench.machine import one_line

    lines = [
        "# GPU benchmark (`benchmarks/gpu.sh`)",
        "",
        f"**Machine:** {one_line(doc['machine'])}.",
        f"Run {doc['conditions']['time']}, load average {doc['conditions']['loadavg_1_5_15']}; {doc['seconds']:.0f} s in all.",
        "",
    ]
    for step, info in doc["steps"].items():
        lines.append(f"- **{step}**: {info['status']}" + (f" — {info['reason']}" if info.get("reason") else ""))
    lines += [
        "",
        "## ONNX Runtime (`zoo bench`)",
        "",
        "See `bench/bench.md` (rows per provider, variant and batch size).",
        "",
    ]
    rows = doc.get("convnext_training", [])
    if rows:
        lines += [
            "## TF training throughput, ConvNeXt at 224 px, mixed_float16, synthetic tensors",
            "",
            "| member | params (M) | batch | images/s | s/step | peak GPU MB | XLA | status |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in rows:
            ok = r["status"] == "ok"
            lines.append(
                f"| {r['member']} | {r['params'] / 1e6:.1f} | {r['batch']} | {r['images_per_s']:.1f} | {r['step_s_median']:.3f} | "
                f"{r['peak_gpu_mem_mb']:.0f} | {'on' if r['jit_compile'] else 'off'} | ok |"
                if ok
                else f"| {r['member']} | | | | | | | {r['status']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--models", nargs="*", default=[], help="run/ensemble/export folders to bench (default: build a small member)"
    )
    ap.add_argument(
        "--data",
        default="synthetic:1200",
        help="data for the member it builds and for accuracy (default synthetic:1200)",
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--engines", default="ort,keras")
    ap.add_argument("--size", type=int, default=224, help="ConvNeXt training image size (default 224)")
    ap.add_argument("--steps", type=int, default=20, help="timed ConvNeXt training steps at most")
    ap.add_argument("--budget-s", type=float, default=30.0, help="time budget per ConvNeXt measurement")
    ap.add_argument("--skip-gpu", action="store_true", help="skip the GPU-only steps even if a GPU is visible")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    sys.path.insert(0, str(REPO))
    from export.bench import bench
    from export.bench.machine import conditions, describe
    from zoo.artifacts import write_json, write_text

    t0 = time.time()
    gpus = [] if args.skip_gpu else tf_gpus()
    steps: dict[str, dict] = {}
    doc: dict = {"machine": describe(), "conditions": conditions(), "settings": vars(args) | {"out": str(args.out)}}
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-bench-") as tmp:
        models = [Path(m) for m in args.models] or build_models(Path(tmp), args.data, args.epochs)
        steps["models"] = {"status": "given" if args.models else "built", "reason": ", ".join(str(m) for m in models)}
        providers = "cpu" if args.skip_gpu else "cuda,tensorrt,cpu"
        variants = "fp32,int8" if args.skip_gpu else "fp32,fp16,int8"
        bench(
            models,
            args.out / "bench",
            engines=args.engines,
            providers=providers,
            variants=variants,
            batch_sizes=[1, 128],
            iterations=args.iterations,
            max_seconds=10,
            data=args.data,
            limit=512,
            force=True,
            note="benchmarks/gpu.sh" + (" --skip-gpu" if args.skip_gpu else ""),
        )
        steps["zoo bench"] = {"status": "ok", "reason": "GPU providers skipped (--skip-gpu)" if args.skip_gpu else ""}
    if gpus:
        doc["convnext_training"] = convnext_throughput(args.size, args.steps, args.budget_s, timeout_s=240)
        steps["ConvNeXt training throughput"] = {"status": "ok"}
    else:
        steps["ConvNeXt training throughput"] = {
            "status": "skipped",
            "reason": "--skip-gpu" if args.skip_gpu else "no GPU visible to TensorFlow",
        }
    doc["steps"] = steps
    doc["seconds"] = round(time.time() - t0, 1)
    write_json(args.out / "gpu.json", doc)
    write_text(args.out / "gpu.md", render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
