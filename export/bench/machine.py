"""The machine a benchmark ran on, how busy it was, and what its cores can do at most.

Every ``zoo bench`` result carries this, because a latency figure without the CPU, the core
count, the library versions and the load at the time cannot be compared with anything.
:func:`gemm_peak` measures the attainable multiply-accumulate rate with a plain ONNX Runtime
``MatMul`` (fp32) and ``MatMulInteger`` (u8 x s8, the VNNI path) on large square matrices:
the denominator of "how close is this model to the hardware".
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import logging
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "onnx", "tensorflow", "keras", "tf2onnx", "numpy")
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "avx512_bf16",
    "asimd",
    "asimddp",
)


def _cpuinfo() -> tuple[str, list[str]]:
    name, flags = platform.processor() or "unknown CPU", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and name in ("unknown CPU", "x86_64", ""):
                name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = value.split()
    except OSError:
        pass
    return name, flags


def gpus() -> list[dict]:
    """GPUs that ``nvidia-smi`` reports (name, memory in MiB, driver); empty without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    rows = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            rows.append({"name": parts[0], "memory_mib": int(float(parts[1])), "driver": parts[2]})
    return rows


def gpu_memory_used_mib() -> float | None:
    """Memory in use on GPU 0 now (MiB), or None without ``nvidia-smi``."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def describe() -> dict:
    """CPU model, cores, ISA flags that matter for int8/fp16, memory, GPUs, library versions, ORT providers."""
    cpu, flags = _cpuinfo()
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem = None
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "memory_gib": mem,
        "gpus": gpus(),
        "platform": platform.platform(),
        "versions": versions(),
        "onnxruntime_providers": providers,
    }


def conditions() -> dict:
    """How busy the machine is: load averages and the other processes using more than 20% of a core."""
    busy = []
    try:
        import psutil

        procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
        for p in procs:
            try:
                p.cpu_percent(None)
            except psutil.Error:
                pass
        time.sleep(0.5)
        for p in procs:
            try:
                cpu = p.cpu_percent(None)
            except psutil.Error:
                continue
            if cpu > 20 and p.pid != os.getpid():
                busy.append(
                    {
                        "pid": p.pid,
                        "cpu_percent": round(cpu),
                        "cmd": " ".join(p.info["cmdline"] or [p.info["name"] or ""])[:100],
                    }
                )
    except ImportError:
        pass
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "other_busy_processes": busy,
    }


def one_line(m: dict) -> str:
    gpu = ", ".join(g["name"] if isinstance(g, dict) else str(g) for g in m.get("gpus") or []) or "no GPU"
    isa = "/".join(m.get("isa") or []) or "?"
    ort = m.get("versions", {}).get("onnxruntime") or m.get("versions", {}).get("onnxruntime-gpu", "?")
    return f"{m['cpu']} ({m['cores']} cores; {isa}), {m['memory_gib']} GiB, {gpu}; onnxruntime {ort}"


def _gemm_model(n: int, integer: bool):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        w = numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "w")
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        x = helper.make_tensor_value_info("x", TensorProto.UINT8, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
    else:
        w = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "w")
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([node], "gemm_peak", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def gemm_peak(threads: int = 0, n: int = 1024, seconds: float = 1.0) -> dict:
    """Attainable GMAC/s of one ORT CPU session: fp32 ``MatMul`` and int8 ``MatMulInteger`` (u8 x s8), n x n x n."""
    import onnxruntime as ort

    out = {"n": n, "threads": threads or "default"}
    for key, integer in (("fp32_gmacs", False), ("int8_gmacs", True)):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            sess = ort.InferenceSession(
                _gemm_model(n, integer).SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - an ORT build without the kernel: report, do not fail the benchmark
            out[key] = None
            log.warning("GEMM peak %s: %s", key, exc)
            continue
        rng = np.random.default_rng(1)
        x = rng.integers(0, 255, (n, n), dtype=np.uint8) if integer else rng.standard_normal((n, n), dtype=np.float32)
        sess.run(None, {"x": x})
        runs, t0 = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - t0 < seconds:
            sess.run(None, {"x": x})
            runs += 1
        out[key] = round(runs * n**3 / (time.perf_counter() - t0) / 1e9, 1)
    return out
