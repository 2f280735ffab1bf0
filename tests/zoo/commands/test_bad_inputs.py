"""Reliability and security across stages (issue #7).

- every bad-input corpus case (``benchmarks/corpus.py``) behaves as ``docs/reliability.md`` documents;
- user errors reach the command line as one line with exit code 2, never a traceback;
- ``kill -9`` during training, then ``--resume``: no epoch lost beyond the one in flight, none
  repeated, data order and random-generator states continued;
- every write goes through :mod:`zoo.artifacts` (temporary name + rename), nothing unpickles,
  ``.keras`` files load with ``safe_mode=True`` (static audit of the source tree).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import subprocess
import sys

import corpus
import numpy as np
import pytest

from tests.helpers import REPO, one_line_error

PACKAGES = ("zoo", "ensemble", "export")


# ----------------------------------------------------------------------------- the corpus
@pytest.mark.parametrize("case", [c for c in corpus.CASES if c.covered_by is None], ids=lambda c: c.name)
def test_corpus_case_behaves_as_documented(case, tmp_path):
    detail = case.fn(tmp_path)
    assert isinstance(detail, str) and detail


def test_corpus_is_complete_and_documented():
    """Every case has a row in docs/reliability.md; cases covered elsewhere name an existing test."""
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    names = [c.name for c in corpus.CASES]
    assert len(names) == len(set(names))
    missing = [n for n in names if n not in doc]
    assert not missing, f"cases without a row in docs/reliability.md: {missing}"
    for c in corpus.CASES:
        if c.covered_by:
            path, _, test = c.covered_by.partition("::")
            assert f"def {test}(" in (REPO / path).read_text(encoding="utf-8"), c.covered_by
    areas = {c.area for c in corpus.CASES}
    assert {"image", "folder", "npz", "config", "onnx", "run", "tamper"} <= areas


# ----------------------------------------------------------------------------- command line


def test_cli_reports_bad_inputs_in_one_line(tmp_path, capsys):
    tree = corpus.write_tree(tmp_path / "tree")
    (tree / "basophil" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    one_line_error(
        capsys,
        ["train", "custom_cnn", "--data", str(tree), "--image-size", "16", "--out", str(tmp_path / "r")],
        "broken.jpg",
    )
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.arange(3))
    one_line_error(
        capsys,
        ["train", "custom_cnn", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r")],
        "4 images but 3 labels",
    )
    (tmp_path / "c.toml").write_text("[train]\nepoch = 3\n")
    one_line_error(capsys, ["run", "--config", str(tmp_path / "c.toml")], "epoch")
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.keras").write_bytes(b"PK partial")
    one_line_error(capsys, ["evaluate", str(half)], "incomplete")
    one_line_error(capsys, ["export", str(half), "--out", str(tmp_path / "e")], "incomplete")
    one_line_error(capsys, ["ensemble", "vote", str(half), str(half), "--out", str(tmp_path / "v")], "incomplete")


def test_ensemble_clean_floor_without_shifted_rows_is_a_one_line_error(tmp_path, capsys):
    from tests.helpers import make_run, member_probs

    y = np.random.default_rng(0).integers(0, 4, 40)
    runs = [str(make_run(tmp_path / n, {"val": (member_probs(y, 2.0, seed=i), y)})) for i, n in enumerate("ab")]
    out = tmp_path / "v"
    one_line_error(
        capsys, ["ensemble", "vote", *runs, "--out", str(out), "--clean-floor", "0.98"], "clean floor", "--fit-shift"
    )
    one_line_error(
        capsys,
        ["ensemble", "vote", *runs, "--out", str(out), "--fit-shift", "colour", "--clean-floor", "98"],
        "must be a fraction",
    )
    assert not out.exists()


def test_non_utf8_file_names_print_without_crashing(tmp_path, capsys, monkeypatch):
    """Undecodable file names reach the user: escaped in the one-line error, byte-exact on stdout."""
    import io

    from zoo import cli

    tree = corpus.write_tree(tmp_path / "tree")
    bad = os.path.join(os.fsencode(tree / "basophil"), b"bad_\xff.jpg")
    with open(bad, "wb") as fh:
        fh.write(b"not an image")
    assert "bad_" in one_line_error(
        capsys, ["train", "custom_cnn", "--data", str(tree), "--image-size", "16", "--out", str(tmp_path / "r")]
    )
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")  # a UTF-8 terminal's default
    monkeypatch.setattr(sys, "stdout", strict)
    cli._bytes_safe_stdio()
    print(os.fsdecode(bad))
    strict.flush()
    assert raw.getvalue() == bad + b"\n"


# ----------------------------------------------------------------------------- kill -9 and resume
@pytest.mark.slow
def test_kill_9_during_training_then_resume_has_no_gap_or_repeat(tmp_path):
    out = tmp_path / "run"
    killed = corpus.kill_during_training(out, after_epoch=1)
    state = json.loads((out / "checkpoint" / "state.json").read_text())  # what the killed process left behind
    done = state["epoch"]
    assert 1 <= done < 4 and not (out / "card.json").exists()
    assert [r["epoch"] for r in state["history"]] == list(range(1, done + 1))
    assert (out / "checkpoint" / state["weights_file"]).is_file(), "the weights of the last completed epoch are on disk"
    assert state["rng"]["model"] and state["rng"]["augment"], "random-generator states are checkpointed with the epoch"
    # (a rerun without --resume is refused; tests/zoo/test_train.py checks that in-process)
    resumed = subprocess.run(
        corpus.train_cmd(out, resume=True),
        cwd=REPO,
        env=corpus.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4], "no gap, no repeat"
    assert [int(r["phase_epoch"]) for r in rows] == [1, 2, 3, 4]
    for r, before in zip(rows, state["history"]):  # completed epochs are kept exactly, not retrained
        assert float(r["loss"]) == pytest.approx(before["loss"])
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs[done] < lrs[done - 1], "the schedule continued (optimizer step count restored), not restarted"
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["epochs_run"] == 4 and card["classes"] and not (out / "checkpoint").exists()
    assert killed["killed_at"] >= killed["state_mtime"]


def test_data_order_is_a_function_of_seed_and_epoch(synthetic_small):
    """What lets a resumed run see the batches an uninterrupted one would: the order is (seed, epoch) alone.
    (That the resumed epoch continues the checkpointed generator states: tests/zoo/test_train.py.)"""
    from zoo.data.batches import epoch_order, make_dataset

    split = synthetic_small.split("train")
    whole = [y.numpy().argmax(1).tolist() for _, y in make_dataset(split, 8, 16, training=True, seed=3, epochs=(0, 3))]
    tail = [y.numpy().argmax(1).tolist() for _, y in make_dataset(split, 8, 16, training=True, seed=3, epochs=(2, 3))]
    per_epoch = -(-len(split) // 16)
    assert len(whole) == 3 * per_epoch and whole[2 * per_epoch :] == tail, (
        "epoch 3 alone = epoch 3 of an uninterrupted run"
    )
    assert not np.array_equal(epoch_order(split.labels, 3, 0), epoch_order(split.labels, 3, 1)), "epochs differ"
    balanced = epoch_order(split.labels, 3, 0, balance=10)
    assert np.bincount(split.labels[balanced], minlength=8)[np.unique(split.labels)].tolist() == [10] * len(
        np.unique(split.labels)
    )


# ----------------------------------------------------------------------------- static audits
def _calls(pkgs=PACKAGES):
    """(relative path, line, call node, dotted callee) for every call in the packages (AST: no docstrings)."""
    for pkg in pkgs:
        for p in sorted((REPO / pkg).rglob("*.py")):
            tree = ast.parse(p.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    yield p.relative_to(REPO).as_posix(), node.lineno, node, ast.unparse(node.func)


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else ast.unparse(k.value)
    return None


UNPICKLERS = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def test_nothing_unpickles_and_keras_loads_are_safe():
    hits = []
    for pkg in PACKAGES:
        for p in sorted((REPO / pkg).rglob("*.py")):
            rel = p.relative_to(REPO).as_posix()
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    hits += [
                        f"{rel}:{node.lineno}: import {a.name}"
                        for a in node.names
                        if a.name.split(".")[0] in UNPICKLERS
                    ]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
                    hits.append(f"{rel}:{node.lineno}: from {node.module} import …")
    keras_loads = 0
    for rel, line, node, callee in _calls():
        if _kw(node, "allow_pickle") not in (None, False):
            hits.append(f"{rel}:{line}: {callee}(allow_pickle={_kw(node, 'allow_pickle')!r})")
        if _kw(node, "safe_mode") not in (None, True):
            hits.append(f"{rel}:{line}: {callee}(safe_mode={_kw(node, 'safe_mode')!r})")
        if callee.endswith("enable_unsafe_deserialization"):
            hits.append(f"{rel}:{line}: {callee}()")
        if callee.endswith("load_model") and "keras" in callee:
            keras_loads += 1
            if _kw(node, "safe_mode") is not True:
                hits.append(f"{rel}:{line}: {callee} without an explicit safe_mode=True")
        if callee in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not False:
            hits.append(f"{rel}:{line}: np.load without allow_pickle=False")
    assert keras_loads, "the audit should see the Keras loader(s)"
    assert not hits, "\n".join(hits)


# A write to a final name must go through zoo.artifacts (write_*/atomic_path) or land in a
# temporary folder that is renamed into place as a whole. Each allowed exception says why.
WRITERS = {
    "write_text": "self",
    "write_bytes": "self",
    "save": 0,
    "savefig": 0,
    "save_model": 1,
    "save_weights": 0,
    "to_csv": 0,
    "tofile": 0,
    "savez": 0,
    "savez_compressed": 0,
    "copy": 1,
    "copy2": 1,
    "copyfile": 1,
    "move": 1,
    "link": 1,
    "export": 0,
    "save_img": 0,
    "imwrite": 0,
    "quantize_static": 1,
    "quantize_dynamic": 1,
    "convert_float_to_float16_model_path": 1,
}
TEMPORARY = re.compile(r"^(tmp|fh|buf|f)\b|^tmp_|_tmp\b")
ALLOWED_WRITES = {
    ("zoo/artifacts.py", "tmp"): "the atomic writers themselves",
    ("zoo/curate/clean.py", "target"): "into OUT/.data.partial, renamed to OUT/data when complete",
    ("export/convert.py", "str(path)"): "inside the export's temporary folder, renamed into place after the card",
    ("export/quantize.py", "*"): "writes the int8 file inside the export's temporary folder",
}


def _write_target(node: ast.Call, callee: str):
    name = callee.rsplit(".", 1)[-1]
    if name == "open":
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax+"):
            return ast.unparse(node.args[0])
        return None
    if name not in WRITERS:
        return None
    where = WRITERS[name]
    if name in ("copy", "copy2", "copyfile", "move", "link") and not callee.startswith(("shutil.", "os.")):
        return None  # e.g. dict.copy()
    if where == "self":
        return (
            callee.rsplit(".", 1)[0] if "." in callee else None
        )  # Path.write_text; zoo.artifacts.write_text(...) is atomic
    args = node.args
    return ast.unparse(args[where]) if len(args) > where else None


def test_the_audits_catch_planted_violations():
    planted = ast.parse(
        "import pickle\n"
        "Path(out).write_text('x')\n"
        "np.save(out / 'a.npy', a)\n"
        "fig.savefig(out / 'p.png')\n"
        "open(path, 'w')\n"
        "model.save(folder / 'model.keras')\n"
        "shutil.copy2(src, final)\n"
        "keras.saving.load_model(p, safe_mode=False)\n"
        "np.load(p, allow_pickle=True)\n"
        "with atomic_path(p) as tmp:\n    model.save(tmp)\n"
    )
    calls = [(n, ast.unparse(n.func)) for n in ast.walk(planted) if isinstance(n, ast.Call)]
    writes = [(c, _write_target(n, c)) for n, c in calls if _write_target(n, c) is not None]
    flagged = sorted((c, t) for c, t in writes if not TEMPORARY.search(t))
    assert flagged == sorted(
        [
            ("Path(out).write_text", "Path(out)"),
            ("np.save", "out / 'a.npy'"),
            ("fig.savefig", "out / 'p.png'"),
            ("open", "path"),
            ("model.save", "folder / 'model.keras'"),
            ("shutil.copy2", "final"),
        ]
    )
    assert ("model.save", "tmp") in writes  # the atomic form is recognised, not flagged
    kws = {c: (_kw(n, "safe_mode"), _kw(n, "allow_pickle")) for n, c in calls}
    assert kws["keras.saving.load_model"][0] is False and kws["np.load"][1] is True


def test_every_write_is_atomic():
    offenders = []
    for rel, line, node, callee in _calls():
        target = _write_target(node, callee)
        if target is None or TEMPORARY.search(target):
            continue
        if any(rel == f and (snippet == "*" or snippet == target) for f, snippet in ALLOWED_WRITES):
            continue
        offenders.append(f"{rel}:{line}: {callee}(… {target} …)")
    assert not offenders, "writes to final names that bypass zoo.artifacts:\n" + "\n".join(offenders)


def test_an_ensemble_folder_appears_only_complete(tmp_path, monkeypatch):
    """An ensemble build that fails after writing some files leaves no folder under the final name.

    (An export that fails its parity check leaves nothing either: tests/export/test_convert.py.)"""
    from ensemble import EnsembleConfig, build_ensemble
    from ensemble import build as build_mod

    runs = [corpus.fake_member(tmp_path / "m" / f"m{i}", name=f"m{i}", seed=i, model=False) for i in range(2)]

    def boom(*a, **k):
        raise RuntimeError("crash while writing the ensemble")

    monkeypatch.setattr(build_mod, "write_card", boom)
    with pytest.raises(RuntimeError):
        build_ensemble(runs, tmp_path / "ens", config=EnsembleConfig(folds=3))
    assert not (tmp_path / "ens").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ens")], "temporary folder cleaned up"
