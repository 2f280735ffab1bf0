"""Reliability round 2 (issue #14), the parts the corpus (benchmarks/corpus.py) cannot show in-process.

- the promised one-line errors reach the command line (exit 2, no traceback);
- a second ``zoo train`` to the same ``--out`` refuses while the first runs (filelock);
- FIFOs among the inputs of ``zoo data inspect`` / ``zoo predict`` never hang the command
  (each runs in a subprocess with a timeout: a hang fails the test instead of stalling it);
- ``deterministic`` training: the same tiny member trained twice has bitwise-identical weights;
- one version source: the distribution's metadata, in ``zoo --version`` and in exports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import corpus
import numpy as np
import pytest

from tests.helpers import one_line_error
from zoo.cli import main


def _verified_onnx(path, **kw):
    return corpus._onnx_graph(path, **kw)


def test_cli_promised_one_liners(tmp_path, capsys):
    model = _verified_onnx(tmp_path / "m.onnx")
    imgs = corpus.write_tree(tmp_path / "imgs", classes=("a",), n=1)
    afile = tmp_path / "file.txt"
    afile.write_text("mine")
    one_line_error(capsys, ["predict", str(model), str(imgs), "--out", str(tmp_path)], "is a folder")
    one_line_error(capsys, ["predict", str(model), str(imgs), "--out", str(afile / "p.csv")], "is a file, so nothing")
    one_line_error(capsys, ["predict", str(model), str(imgs), "--out", str(afile)], "exists", "--force")
    assert main(["-q", "predict", str(model), str(imgs), "--out", str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()
    one_line_error(
        capsys, ["train", "custom_cnn", "--data", "synthetic:32", "--out", str(afile)], "is a file, not a folder"
    )
    from onnx import TensorProto

    u8 = _verified_onnx(tmp_path / "u8.onnx", dtype=TensorProto.UINT8)
    one_line_error(capsys, ["predict", str(u8), str(imgs)], "tensor(uint8)")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    one_line_error(capsys, ["ensemble", "vote", str(mine), str(mine), "--out", str(mine)], "contains the source")
    assert afile.read_text() == "mine" and (mine / "notes.txt").read_text() == "mine"


def _run(args, timeout):
    return subprocess.run(
        [sys.executable, "-m", "zoo.cli", *args],
        cwd=corpus.REPO,
        env=corpus.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fifos_never_hang_the_command_line(tmp_path):
    tree = corpus.write_tree(tmp_path / "tree")
    os.mkfifo(tree / "basophil" / "pipe.jpg")
    model = _verified_onnx(tmp_path / "m.onnx")
    os.mkfifo(tmp_path / "pipe.png")
    r = _run(
        ["-q", "data", "inspect", "--data", str(tree)], timeout=120
    )  # a hang raises TimeoutExpired: the test fails, not stalls
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    r = _run(["-q", "predict", str(model), str(tmp_path / "pipe.png"), str(tree)], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pipe.png,error" in r.stdout and "FIFO" in r.stdout
    r = _run(
        ["-q", "train", "custom_cnn", "--data", str(tree), "--image-size", "16", "--out", str(tmp_path / "run")],
        timeout=120,
    )
    assert r.returncode == 2 and "pipe.jpg" in r.stderr and "FIFO" in r.stderr and "Traceback" not in r.stderr, (
        r.stderr[-2000:]
    )


@pytest.mark.slow
def test_second_train_to_the_same_out_refuses_while_the_first_runs(tmp_path):
    out = tmp_path / "run"
    long = ["--patience", "1000"]  # 500 epochs without early stopping: it is still running when the second starts
    first = subprocess.Popen(
        corpus.train_cmd(out, epochs=500) + long,
        cwd=corpus.REPO,
        env=corpus.subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        t0 = time.time()
        while not (out / "checkpoint" / "state.json").exists():  # the first is training
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.time() - t0 < 300, "first training never checkpointed"
            time.sleep(0.1)
        second = subprocess.run(
            corpus.train_cmd(out, epochs=500) + long,
            cwd=corpus.REPO,
            env=corpus.subprocess_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert second.returncode == 2, second.stderr[-2000:]
        lines = [line for line in second.stderr.splitlines() if line.startswith("zoo:")]
        assert len(lines) == 1 and "another zoo command is writing" in lines[0], second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first run must be unaffected"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (out / "checkpoint" / "state.json").is_file()  # the first run's work is kept, resumable


def _weights(run):
    from zoo.runs import load_model

    return [w.tobytes() for w in load_model(run).get_weights()]


def test_deterministic_training_is_bitwise_reproducible(tmp_path, synthetic_small, tiny_params):
    from zoo.artifacts import read_card
    from zoo.train import train

    kw = dict(image_size=24, params=tiny_params, epochs=2, batch_size=32, tensorboard=False, augment="flip_rot90")
    a = train("custom_cnn", synthetic_small, tmp_path / "a", **kw)
    b = train("custom_cnn", synthetic_small, tmp_path / "b", **kw)
    assert read_card(a)["training"]["config"]["deterministic"] is True
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb) and all(x == y for x, y in zip(wa, wb)), "same seed, same data: weights differ"
    assert np.array_equal(np.load(a / "probs" / "val.npy"), np.load(b / "probs" / "val.npy"))


def test_one_version_source(capsys, tmp_path):
    import importlib.metadata as md

    import zoo
    from export import metadata as meta

    expected = md.version("bloodcell-zoo")
    assert zoo.__version__ == expected == meta.zoo_version() != "0+unknown"
    props = meta.build(name="x", kind="member", classes=["a", "b"], image_size=8, source_card_sha256="0" * 64)
    assert props["zoo.version"] == expected
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"zoo {expected}"
    pyproject = (corpus.REPO / "pyproject.toml").read_text()
    import re

    versions = re.findall(r'^version = "([^"]+)"$', pyproject, flags=re.MULTILINE)
    assert versions == [expected]
    assert '__version__ = "' not in (corpus.REPO / "zoo" / "__init__.py").read_text()
    json.dumps(props)
