"""`--strategy multiworker` (tf.distribute.MultiWorkerMirroredStrategy): two local workers, one tiny epoch, a valid run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, TINY_CNN

TIMEOUT_S = 420


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_two_local_workers_train_one_epoch_to_a_valid_run(tmp_path):
    from zoo.artifacts import read_card

    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    params = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY_CNN.items()})
    procs, logs = [], []
    for i in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
            "PYTHONPATH": str(REPO),
            "CUDA_VISIBLE_DEVICES": "-1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "ZOO_PROGRESS": "0",
            "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
        }
        log = open(tmp_path / f"worker{i}.log", "w")
        logs.append(log)
        cmd = [
            sys.executable,
            "-m",
            "zoo.cli",
            "train",
            "custom_cnn",
            "--data",
            "synthetic:64",
            "--image-size",
            "20",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--params",
            params,
            "--strategy",
            "multiworker",
            "--out",
            str(tmp_path / f"worker{i}"),
        ]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + TIMEOUT_S
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    tails = "\n".join(
        f"--- worker {i} (exit {p.returncode})\n" + (tmp_path / f"worker{i}.log").read_text()[-1500:]
        for i, p in enumerate(procs)
    )
    assert [p.returncode for p in procs] == [0, 0], tails
    card = read_card(tmp_path / "worker0")  # the chief's run folder: complete and verified
    assert card["kind"] == "member" and "val" in card["metrics"]
    assert card["training"]["strategy"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy"), tails
    assert card["training"]["replicas"] == 2 and card["training"]["epochs_run"] == 1
