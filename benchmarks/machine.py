"""Describe the machine a benchmark ran on (named in every results file)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    gpus = []
    try:
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - TF is optional here
        pass
    providers = []
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "gpus": gpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime_providers": providers,
    }


def conditions() -> dict:
    """How busy the machine is while a benchmark runs: load average and other busy processes."""
    import datetime as dt

    busy = []
    try:
        import psutil

        procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
        for p in procs:
            p.cpu_percent(None)
        import time

        time.sleep(0.5)
        for p in procs:
            try:
                cpu = p.cpu_percent(None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if cpu > 20 and p.pid != os.getpid():
                busy.append(
                    {
                        "pid": p.pid,
                        "cpu_percent": round(cpu),
                        "cmd": " ".join(p.info["cmdline"] or [p.info["name"] or ""])[:120],
                    }
                )
    except ImportError:
        pass
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "other_busy_processes": busy,
    }


def one_line(m: dict | None = None) -> str:
    m = m or describe()
    gpu = ", ".join(m["gpus"]) if m["gpus"] else "no GPU"
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {gpu}; {m['platform']}"
