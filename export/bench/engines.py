"""Timed inference: ONNX Runtime sessions (any provider, optional IO binding) and Keras (``predict`` and a direct call).

Every engine is reduced to the same two callables so one timing loop measures them all:
``run(batch)`` for a batch already prepared in the engine's memory, and ``predict(images)``
for accuracy over a whole split. Start time (session creation / model load), a
per-row peak RSS sampled by a background thread, and GPU memory (``nvidia-smi``) are
recorded alongside the latency percentiles.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class Unavailable(Exception):
    """This engine/provider/variant cannot run here (reported as a skipped row, never an error)."""


@dataclass
class Engine:
    run: Callable[[np.ndarray], Any]  # one timed call on a batch
    predict: Callable[[np.ndarray, int], np.ndarray]  # probabilities for many images
    start_s: float
    providers: list[str]
    close: Callable[[], None] = lambda: None


class RssSampler:
    """Peak resident set size of this process while the ``with`` block runs (psutil, every 20 ms)."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc, self._interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def session_options(threads: int = 0, opt_level: str = "all", profile_prefix: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def ort_engine(
    model,
    provider: str,
    *,
    threads: int = 0,
    opt_level: str = "all",
    io_binding: bool | None = None,
    profile_prefix: str | None = None,
) -> Engine:
    """An ORT session on ``provider`` (cpu|cuda|tensorrt). Raises :class:`Unavailable` when the build lacks it."""
    import onnxruntime as ort

    want = PROVIDERS[provider]
    available = ort.get_available_providers()
    if want not in available:
        raise Unavailable(f"{want} not in this onnxruntime build (has {', '.join(available)})")
    providers = [want] + (
        ["CUDAExecutionProvider"] if provider == "tensorrt" and "CUDAExecutionProvider" in available else []
    )
    if want != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(src, session_options(threads, opt_level, profile_prefix), providers=providers)
    except Exception as exc:  # a GPU provider listed by the build but without a device/driver is "unavailable" too
        if provider != "cpu":
            raise Unavailable(f"{want} failed to start: {str(exc).splitlines()[0][:200]}") from None
        raise
    start = time.perf_counter() - t0
    used = sess.get_providers()
    if used[0] != want:
        raise Unavailable(f"{want} fell back to {used[0]} (no usable device)")
    name = sess.get_inputs()[0].name
    out_name = sess.get_outputs()[0].name
    device = "cuda" if provider in ("cuda", "tensorrt") else "cpu"
    if io_binding is None:
        io_binding = device == "cuda"

    def predict(images: np.ndarray, batch: int) -> np.ndarray:
        return np.concatenate(
            [
                sess.run(None, {name: np.ascontiguousarray(images[i : i + batch], dtype=np.float32)})[0]
                for i in range(0, len(images), batch)
            ]
        ).astype(np.float32)

    if io_binding:
        cache: dict[int, Any] = {}

        def run(x: np.ndarray):
            key = id(x)
            if key not in cache:  # the input lives on the device: the timing measures the model, not the PCIe copy
                binding = sess.io_binding()
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, device, 0))
                binding.bind_output(out_name, device)
                cache.clear()
                cache[key] = binding
            sess.run_with_iobinding(cache[key])
            if device == "cuda":
                cache[key].synchronize_outputs()
    else:

        def run(x: np.ndarray):
            return sess.run(None, {name: x})

    def close() -> None:
        if profile_prefix:
            sess.end_profiling()

    return Engine(run, predict, start, used, close)


def keras_engine(source, mode: str, *, threads: int = 0) -> Engine:
    """Keras ``predict`` or a direct ``model(x, training=False)`` call of a run or ensemble folder.

    An ensemble runs its members (with their TTA views) and combines their probabilities with
    the export package's numpy formula, as the exporter's parity reference does.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TF already initialised in this process: keep its setting
            log.debug("TensorFlow threads already fixed; --threads not applied to Keras")
    from export.convert import load_keras
    from export.ensemble_graph import combine_numpy, member_probs_numpy
    from export.sources import open_source

    t0 = time.perf_counter()
    src = open_source(source)
    models = load_keras(src)
    start = time.perf_counter() - t0

    def one(model, batch: int) -> Callable[[np.ndarray], np.ndarray]:
        if mode == "predict":
            return lambda v: model.predict(v, batch_size=batch, verbose=0)
        call = tf.function(lambda v: model(v, training=False), reduce_retracing=True) if mode == "function" else None

        def direct(v):
            outs = []
            for i in range(0, len(v), batch):
                xb = tf.convert_to_tensor(v[i : i + batch])
                outs.append((call(xb) if call else model(xb, training=False)).numpy())
            return np.concatenate(outs)

        return direct

    def predict(images: np.ndarray, batch: int) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if src.combination is None:
            return np.asarray(one(models[0], batch)(x), dtype=np.float32)
        probs = [member_probs_numpy(one(m, batch), x, src.combination.tta) for m in models]
        return combine_numpy(probs, src.combination)

    def run(x: np.ndarray):
        return predict(x, len(x))

    gpus = tf.config.list_physical_devices("GPU")
    return Engine(run, predict, start, ["tf-gpu" if gpus else "tf-cpu"])


def time_engine(engine: Engine, x: np.ndarray, warmup: int, iterations: int, max_seconds: float) -> dict:
    """Latency percentiles (ms per batch) and throughput (images/s) of ``engine.run(x)``."""
    for _ in range(warmup):
        engine.run(x)
    times: list[float] = []
    t_all = time.perf_counter()
    while len(times) < iterations and (len(times) < 3 or time.perf_counter() - t_all < max_seconds):
        t = time.perf_counter()
        engine.run(x)
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1000
    p50 = float(np.percentile(ms, 50))
    return {
        "iterations": len(times),
        "p50_ms": round(p50, 4),
        "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "throughput_ips": round(len(x) * len(times) / max(1e-9, float(np.sum(times))), 1),
    }
