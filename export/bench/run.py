"""``zoo bench``: every (model, engine, provider, variant, batch size) as one row of one table.

The loop is deliberately flat: resolve each MODEL (:mod:`export.bench.targets`), count its
parameters and MACs once from the fp32 graph (:mod:`export.bench.graph`), then for each
engine/provider/variant open one session, score the ``--data`` split once (accuracy does not
depend on the batch size) and time every batch size. Anything that cannot run here — a
provider missing from the ORT build, a variant the export lacks, Keras without a reachable
source — becomes a row with ``status: skipped`` and the reason, never an exception.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.bench import graph, machine
from export.bench.engines import (
    RssSampler,
    Unavailable,
    keras_engine,
    ort_engine,
    time_engine,
)
from export.bench.targets import Target, resolve
from zoo.errors import ZooError

log = logging.getLogger(__name__)

ENGINES = ("ort", "keras")
KERAS_MODES = ("predict", "call")
PROVIDER_NAMES = ("cpu", "cuda", "tensorrt")
VARIANTS = ("fp32", "fp16", "int8")
# Without --variant: what each provider is for (int8 QDQ kernels are CPU kernels; fp16 pays on GPUs).
DEFAULT_VARIANTS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16"), "tensorrt": ("fp32", "fp16")}
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "nll", "ece")
COLUMNS = (
    "model",
    "kind",
    "engine",
    "provider",
    "variant",
    "batch",
    "threads",
    "status",
    "reason",
    "iterations",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "ms_per_image",
    "throughput_ips",
    "session_start_s",
    "peak_rss_mb",
    "gpu_mem_mb",
    "model_mb",
    "params",
    "macs_per_image",
    "gmacs_per_s",
    "peak_gmacs_per_s",
    "pct_of_peak",
    *METRIC_KEYS,
    "accuracy_source",
    "eval_images",
    "providers_used",
)


def _parse_list(value: Any, allowed: Sequence[str] | None, what: str) -> list[str]:
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise ZooError(f"{what} {bad} unknown; choose from {', '.join(allowed)}")
    if not items:
        raise ZooError(f"{what}: give at least one")
    return items


def parse_batch_sizes(value: Any) -> list[int]:
    try:
        sizes = [int(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except ValueError:
        raise ZooError(f"--batch-sizes {value!r}: give integers like 1,128") from None
    if not sizes or min(sizes) < 1:
        raise ZooError(f"--batch-sizes {value!r}: every batch size must be >= 1")
    return sizes


def _model_bytes(model) -> int | None:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stat().st_size
    return model.ByteSize() if hasattr(model, "ByteSize") else None


def _data_name(data) -> str | None:
    """What the accuracy was scored on: a source string, a Dataset's source, or the pipeline's data."""
    if data is None:
        return None
    owner = getattr(data, "__self__", None)  # a bound ``dataset_at`` of the pipeline's context
    if owner is not None and hasattr(owner, "cfg"):
        return str(owner.cfg.data.source)
    return str(getattr(data, "source", data))


def _eval_images(
    data, split: str, size: int, classes: list[str], limit: int | None, cache: dict
) -> tuple[np.ndarray, np.ndarray] | None:
    if data is None:
        return None
    from zoo.data import Dataset, load_dataset

    key = (str(getattr(data, "source", data)), size)
    if key not in cache:
        if callable(data) and not isinstance(data, Dataset):  # size -> Dataset (the pipeline's dataset_at)
            ds = data(size)
        else:
            ds = data if isinstance(data, Dataset) else load_dataset(str(data), size)
        if ds.image_size != size:
            raise ZooError(f"--data is at {ds.image_size} px but a model takes {size} px")
        cache[key] = ds
    ds = cache[key]
    if list(ds.class_names) != list(classes):
        raise ZooError(f"--data has classes {ds.class_names}, the model {classes}")
    part = ds.split(split)
    if not len(part):
        raise ZooError(f"--data has no '{split}' split images")
    n = len(part) if not limit else min(limit, len(part))
    return np.asarray(part.images[:n], dtype=np.float32), np.asarray(part.labels[:n])


def _timing_batch(size: int, batch: int, images: np.ndarray | None) -> np.ndarray:
    if images is not None and len(images):
        reps = -(-batch // len(images))
        return np.ascontiguousarray(np.tile(images, (reps, 1, 1, 1))[:batch], dtype=np.float32)
    return np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def _row(t: Target, engine: str, provider: str, variant: str, batch: int | None, threads: int, **kw) -> dict:
    row = {c: None for c in COLUMNS}
    row.update(
        model=t.name,
        kind=t.kind,
        engine=engine,
        provider=provider,
        variant=variant,
        batch=batch,
        threads=threads or "default",
        status="ok",
        reason="",
    )
    row.update(kw)
    return row


def _cases(
    t: Target, engines: list[str], providers: list[str], variants: list[str] | None
) -> list[tuple[str, str, str]]:
    out = []
    if "ort" in engines:
        for p in providers:
            for v in variants or DEFAULT_VARIANTS[p]:
                out.append(("ort", p, v))
    if "keras" in engines:
        out += [(f"keras-{m}", "tf", "fp32") for m in KERAS_MODES]
    return out


def bench_target(
    t: Target,
    *,
    engines,
    providers,
    variants,
    batch_sizes,
    threads,
    warmup,
    iterations,
    max_seconds,
    eval_data,
    peak: dict,
    opt_level: str = "all",
    profile_dir: Path | None = None,
    bar=None,
) -> list[dict]:
    """Rows for one target (see module docstring)."""
    rows: list[dict] = []
    fp32 = t.onnx.get("fp32") or next(iter(t.onnx.values()), None)
    params = macs = None
    if fp32 is not None:
        params = graph.count_parameters(fp32)
        macs = graph.count_macs(fp32)["macs"]
    for engine, provider, variant in _cases(t, engines, providers, variants):

        def skipped(reason: str, status: str = "skipped", engine=engine, provider=provider, variant=variant) -> None:
            log.info("%s %s/%s/%s: %s (%s)", t.name, engine, provider, variant, status, reason)
            rows.extend(
                _row(t, engine, provider, variant, b, threads, status=status, reason=reason) for b in batch_sizes
            )
            if bar is not None:
                bar.update(len(batch_sizes))

        model_file = None
        try:
            if engine == "ort":
                model_file = t.onnx.get(variant)
                if model_file is None:
                    skipped(
                        f"no {variant} file"
                        + (" (export with `zoo export --quantize int8 --dtype fp16`)" if t.onnx else "")
                    )
                    continue
                prefix = str(profile_dir / f"{t.name}-{provider}-{variant}") if profile_dir else None
                eng = ort_engine(model_file, provider, threads=threads, opt_level=opt_level, profile_prefix=prefix)
            else:
                if t.keras_source is None:
                    skipped(t.keras_note or "no Keras model")
                    continue
                eng = keras_engine(t.keras_source, engine.split("-", 1)[1], threads=threads)
        except Unavailable as exc:
            skipped(str(exc))
            continue
        except ZooError as exc:
            skipped(str(exc), status="failed")
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. an fp16 op without a CPU kernel: the row says so
            skipped(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", status="failed")
            continue
        metrics, source = {}, None
        if eval_data is not None:
            images, labels = eval_data
            from zoo.evaluate import compute_metrics

            m = compute_metrics(labels, eng.predict(images, max(batch_sizes)), t.classes)
            metrics, source = {k: round(float(m[k]), 6) for k in METRIC_KEYS}, "measured"
        else:
            acc = t.recorded_accuracy.get("keras" if engine.startswith("keras") else variant)
            if acc is not None:
                metrics, source = {"accuracy": acc}, "card"
        size_b = _model_bytes(model_file) if model_file is not None else None
        for b in batch_sizes:
            x = _timing_batch(t.image_size, b, None if eval_data is None else eval_data[0][:b])
            gpu0 = machine.gpu_memory_used_mib() if provider in ("cuda", "tensorrt") else None
            try:
                with RssSampler() as rss:
                    res = time_engine(eng, x, warmup, iterations, max_seconds)
            except Exception as exc:  # noqa: BLE001 - a batch size the provider cannot run (memory): reported
                rows.append(
                    _row(
                        t,
                        engine,
                        provider,
                        variant,
                        b,
                        threads,
                        status="failed",
                        reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                    )
                )
                continue
            finally:
                if bar is not None:
                    bar.update(1)
            gpu1 = machine.gpu_memory_used_mib() if gpu0 is not None else None
            gmacs = round(macs * res["throughput_ips"] / 1e9, 2) if macs else None
            pk = (
                peak.get("int8_gmacs" if variant == "int8" else "fp32_gmacs")
                if provider == "cpu" or engine != "ort"
                else None
            )
            rows.append(
                _row(
                    t,
                    engine,
                    provider,
                    variant,
                    b,
                    threads,
                    **res,
                    ms_per_image=round(res["p50_ms"] / b, 4),
                    session_start_s=round(eng.start_s, 3),
                    peak_rss_mb=rss.peak_mb,
                    gpu_mem_mb=gpu1,
                    model_mb=None if size_b is None else round(size_b / 1e6, 3),
                    params=params,
                    macs_per_image=macs,
                    gmacs_per_s=gmacs,
                    peak_gmacs_per_s=pk,
                    pct_of_peak=round(100 * gmacs / pk, 1) if gmacs and pk else None,
                    **metrics,
                    accuracy_source=source,
                    eval_images=None if eval_data is None else len(eval_data[1]),
                    providers_used=",".join(eng.providers),
                )
            )
        eng.close()
    return rows


def bench(
    models: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    engines: Any = ENGINES,
    providers: Any = PROVIDER_NAMES,
    variants: Any = None,
    batch_sizes: Any = (1, 128),
    threads: int = 0,
    warmup: int = 3,
    iterations: int = 30,
    max_seconds: float = 10.0,
    data: Any = None,
    split: str = "val",
    limit: int | None = None,
    opt_level: str = "all",
    profile: bool = False,
    force: bool = False,
    note: str = "",
) -> Path:
    """Benchmark ``models`` and write ``out/bench.{json,md,csv}`` and ``out/pareto.png``; returns ``out``."""
    from export.bench import report
    from zoo.progress import progress

    engines = _parse_list(engines, ENGINES, "--engine")
    providers = _parse_list(providers, PROVIDER_NAMES, "--provider")
    variants = _parse_list(variants, VARIANTS, "--variant") if variants else None
    batch_sizes = parse_batch_sizes(batch_sizes)
    if warmup < 0 or iterations < 1:
        raise ZooError("--warmup must be >= 0 and --iterations >= 1")
    if not models:
        raise ZooError("give at least one MODEL (export, run or ensemble folder, or .onnx file)")
    out = Path(out)
    report.check_out(out, force)
    targets = [resolve(m) for m in models]
    before = machine.conditions()
    peak = machine.gemm_peak(threads) if "cpu" in providers or "keras" in engines else {}
    cache: dict = {}
    profile_dir = out / "profiles" if profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    total = sum(len(_cases(t, engines, providers, variants)) * len(batch_sizes) for t in targets)
    rows: list[dict] = []
    graphs: dict[str, dict] = {}
    t0 = time.time()
    bar = progress(range(total), total=total, desc="bench", min_items=1)
    bar = bar if hasattr(bar, "update") else None  # ZOO_PROGRESS=0 gives the plain range
    try:
        for t in targets:
            ev = _eval_images(data, split, t.image_size, t.classes, limit, cache)
            rows += bench_target(
                t,
                engines=engines,
                providers=providers,
                variants=variants,
                batch_sizes=batch_sizes,
                threads=threads,
                warmup=warmup,
                iterations=iterations,
                max_seconds=max_seconds,
                eval_data=ev,
                peak=peak,
                opt_level=opt_level,
                profile_dir=profile_dir,
                bar=bar,
            )
            graphs[t.name] = {v: graph.inspect_graph(m) for v, m in t.onnx.items()}
    finally:
        if bar is not None:
            bar.close()
    doc = {
        "machine": machine.describe(),
        "conditions": {"before": before, "after": machine.conditions()},
        "gemm_peak": peak,
        "settings": {
            "models": [str(m) for m in models],
            "engines": engines,
            "providers": providers,
            "variants": variants or {p: list(DEFAULT_VARIANTS[p]) for p in providers},
            "batch_sizes": batch_sizes,
            "threads": threads or "default",
            "warmup": warmup,
            "iterations": iterations,
            "max_seconds": max_seconds,
            "data": _data_name(data),
            "split": split,
            "limit": limit,
            "graph_optimization_level": opt_level,
        },
        "note": note,
        "seconds": round(time.time() - t0, 1),
        "columns": list(COLUMNS),
        "rows": rows,
        "graphs": graphs,
        "targets": [
            {
                "name": t.name,
                "kind": t.kind,
                "origin": t.origin,
                "image_size": t.image_size,
                "files": {
                    v: str(p) if isinstance(p, (str, os.PathLike)) else "converted in memory (fp32)"
                    for v, p in t.onnx.items()
                },
                "keras_source": None if t.keras_source is None else str(t.keras_source),
            }
            for t in targets
        ],
    }
    return report.write(out, doc)
