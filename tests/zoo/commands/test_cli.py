"""The ``zoo`` command end to end, in-process (same code path as the console script)."""

import subprocess
import sys

import pytest

from zoo.cli import main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "evaluate", "list", "run"):
        assert cmd in out


def test_user_errors_are_one_line_with_exit_code_2(capsys):
    assert main(["train", "custom_cnn", "--data", "no/such/folder", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zoo: error: unknown data source 'no/such/folder'")
    assert main(["train", "resnet9000", "--out", "x"]) == 2
    assert "unknown member" in capsys.readouterr().err


def test_list_shows_members_and_runs(trained_run, capsys):
    assert main(["list", "custom*", "--runs", str(trained_run.parent), "--count-params"]) == 0
    out = capsys.readouterr().out
    assert "custom_cnn" in out and "1.53M" in out and "dropout=0.35" in out
    assert "tiny" in out and "member" in out


def test_train_and_evaluate_commands(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
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
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "val: accuracy" in text and f"run folder: {out}" in text
    assert main(["evaluate", str(out), "--split", "test"]) == 0
    assert "test: n=" in capsys.readouterr().out
    assert main(["train", "custom_cnn", "--params", "[1]", "--out", str(tmp_path / "y")]) == 2


def test_console_script_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("zoo ")
