"""The quiet CLI: TensorFlow's native start-up chatter never reaches the user unless --verbose."""

import os
import subprocess
import sys

from tests.helpers import REPO as _REPO
from zoo.console import is_native_log_line

REPO = str(_REPO)
NATIVE = [
    b"I0000 00:00:1795780053.062572    7058 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1795780053.063065    7058 cudart_stub.cc:31] Could not find cuda drivers on your machine",
    b"E0000 00:00:1795780064.807209    7058 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
    b"W0000 00:00:1795780064.807209    7058 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
]
OURS = [
    b"11:48:19 INFO zoo.pipeline: [1/11] train custom_cnn",
    b"synthetic:  25%|##5  | 401/1600 [00:01<00:02]",
    b"zoo: error: unknown data source 'x'",
    b"Traceback (most recent call last):",
    b"F0000 fatal lines are kept",
]


def test_native_log_lines_are_recognised_and_ours_are_not():
    assert all(is_native_log_line(line) for line in NATIVE)
    assert not any(is_native_log_line(line) for line in OURS)


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL")}
    env["PYTHONPATH"] = REPO
    return subprocess.run(
        [sys.executable, "-m", "zoo.cli", *args], capture_output=True, env=env, timeout=300, check=False
    )


def test_cli_stderr_has_no_tensorflow_native_lines_unless_verbose(tmp_path):
    # a tiny training imports TensorFlow and runs ops (the whole start-up chatter, cuInit included) and
    # calls Keras' fit on a tf.data pipeline (the `shuffle=True` warning)
    quiet = _cli(
        "train",
        "custom_cnn",
        "--data",
        "synthetic:64",
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--params",
        '{"widths": [8], "depths": [1], "stem_width": 8}',
        "--out",
        str(tmp_path / "run"),
    )
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    lines = quiet.stderr.splitlines()
    leaked = [line for line in lines if is_native_log_line(line) or b"oneDNN" in line or b"cuda" in line.lower()]
    assert leaked == [], leaked
    assert not any(b"shuffle=True" in line for line in lines)
    assert any(b"INFO zoo." in line for line in lines)  # the zoo's own log lines remain
    loud = _cli("-v", "list", "custom_cnn", "--count-params")
    assert loud.returncode == 0
    assert b"DEBUG" in loud.stderr  # --verbose: everything, the zoo's debug lines included
    assert any(is_native_log_line(line) for line in loud.stderr.splitlines())  # so the quiet run had some to drop


def test_quiet_terminal_drops_tensorflows_retracing_note_and_nothing_else(monkeypatch, caplog):
    import logging

    from zoo import console

    monkeypatch.setenv("ZOO_STDERR_FILTER", "0")  # the fd filter is the subprocess test's business
    monkeypatch.delenv("ABSL_MIN_LOG_LEVEL", raising=False)  # set by quiet_native_logs: restored after the test
    tf_log = logging.getLogger("tensorflow")
    note = "5 out of the last 15 calls to <function one_step_on_data_distributed> triggered tf.function retracing."
    console.quiet_native_logs()
    try:
        with caplog.at_level(logging.WARNING, logger="tensorflow"):
            tf_log.warning(note)
            tf_log.warning("a real TensorFlow warning")
    finally:
        console.restore()
    assert [r.getMessage() for r in caplog.records] == ["a real TensorFlow warning"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tensorflow"):  # restored: library users see TensorFlow as is
        tf_log.warning(note)
    assert [r.getMessage() for r in caplog.records] == [note]
