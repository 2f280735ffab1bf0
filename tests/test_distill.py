"""Distillation: the loss is the documented formula; a tiny ensemble teaches a tiny student."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from zoo.artifacts import card_sha256, read_card, write_card
from zoo.errors import ZooError

INPUT = {"image_size": 32, "channels": 3, "range": [0, 255], "color": "RGB", "preprocessing": "inside model"}
TINY = {"widths": [8, 16], "depths": [1, 1], "stem_width": 8}


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_distillation_loss_matches_the_formula():
    from ensemble.distill import distillation_loss, soften

    rng = np.random.default_rng(0)
    c, t, alpha = 4, 3.0, 0.6
    teacher, student = np_softmax(rng.normal(0, 2, (5, c))), np_softmax(rng.normal(0, 2, (5, c)))
    labels = rng.integers(0, c, 5)
    soft = soften(teacher, t)
    np.testing.assert_allclose(soft, np_softmax(np.log(teacher) / t), atol=1e-5)
    y_true = np.concatenate([soft, np.eye(c)[labels]], axis=1).astype(np.float32)
    got = np.asarray(distillation_loss(c, alpha, t)(y_true, student.astype(np.float32)))
    s_t = np_softmax(np.log(student) / t)
    kl = (soft * (np.log(soft) - np.log(s_t))).sum(1)
    ce = -np.log(student[np.arange(5), labels])
    np.testing.assert_allclose(got, alpha * t * t * kl + (1 - alpha) * ce, rtol=1e-4)
    # alpha = 0 is plain cross-entropy; a student equal to its teacher has zero KL.
    np.testing.assert_allclose(np.asarray(distillation_loss(c, 0.0, t)(y_true, student.astype(np.float32))), ce, rtol=1e-4)
    same = np.asarray(distillation_loss(c, 1.0, t)(y_true, teacher.astype(np.float32)))
    np.testing.assert_allclose(same, 0.0, atol=1e-4)


def test_config_validation():
    from ensemble.distill import DistillConfig

    with pytest.raises(ZooError):
        DistillConfig(alpha=1.5).validate()
    with pytest.raises(ZooError):
        DistillConfig(temperature=0).validate()
    assert DistillConfig().student_params()["widths"] == [16, 32, 64, 128]
    assert DistillConfig(student="other").student_params() == {}


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory):
    """Two tiny untrained custom_cnn members on 64 synthetic 32-px images, and their vote."""
    import keras

    from ensemble import EnsembleConfig, build_ensemble
    from zoo.data import load_dataset
    from zoo.registry import create_model

    root = tmp_path_factory.mktemp("distill")
    # 20% val / 20% test: the loader's default 10% val is fewer rows than the 8 classes at N=64.
    ds = load_dataset("synthetic:64", 32, val_fraction=0.2, test_fraction=0.2)
    runs = []
    for i in range(2):
        keras.utils.set_random_seed(10 + i)
        model = create_model("custom_cnn", 8, 32, **TINY)
        folder = root / "members" / f"m{i}"
        folder.mkdir(parents=True)
        model.save(folder / "model.keras")
        write_card(folder, {"kind": "member", "name": f"m{i}", "member": "custom_cnn", "params": TINY,
                            "classes": list(ds.class_names), "input": dict(INPUT), "data": ds.summary(), "metrics": {}})
        runs.append(folder)
    ens = build_ensemble(runs, root / "ensembles" / "vote", data=ds, config=EnsembleConfig(method="vote", folds=3))
    return ens, ds


def test_distill_cli_writes_a_loadable_student_run(tmp_path, tiny_ensemble):
    from zoo.commands import ensemble as cmd
    from zoo.runs import load_model, load_probs

    ens, ds = tiny_ensemble
    out = tmp_path / "student"
    parser = argparse.ArgumentParser(prog="zoo")
    cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["distill", str(ens), "--data", "synthetic:64", "--out", str(out), "--epochs", "1",
                              "--batch-size", "16", "--params", json.dumps(TINY), "--alpha", "0.5", "--temperature", "3"])
    # The CLI reloads the data from its source string; the member cards record the 20/20 split.
    assert args.func(args) == 0

    card = read_card(out)
    assert card["kind"] == "student" and card["member"] == "custom_cnn" and card["params"] == TINY
    assert card["parents"] == [card_sha256(ens)]
    assert card["classes"] == list(ds.class_names) and card["input"]["image_size"] == 32
    assert card["distillation"]["alpha"] == 0.5 and card["distillation"]["temperature"] == 3.0
    assert card["training"]["epochs_run"] == 1
    model = load_model(out)
    val = ds.split("val")
    p = model.predict(val.images.astype(np.float32), verbose=0)
    assert p.shape == (len(val), 8)
    stored, labels = load_probs(out, "val")
    np.testing.assert_allclose(stored, p, atol=1e-5)
    np.testing.assert_array_equal(labels, val.labels)
    assert "test" in card["metrics"] and 0.0 <= card["metrics"]["val"]["accuracy"] <= 1.0
    # Teacher targets: the ensemble's own probabilities on the training images, cached with the run.
    from ensemble import predict_proba

    t_train = np.load(out / "teacher" / "train.npy")
    np.testing.assert_allclose(t_train, predict_proba(ens, ds.split("train").images), atol=1e-5)
    assert (out / "history.csv").read_text().startswith("epoch,")
    # A student run can itself be an ensemble member.
    from ensemble.members import open_member

    assert open_member(out).card["kind"] == "student"


def test_teacher_targets_are_computed_once_and_cached(tmp_path, tiny_ensemble, monkeypatch):
    from ensemble import load
    from ensemble.distill import teacher_probs

    ens_folder, ds = tiny_ensemble
    ens = load(ens_folder)
    calls = []
    real = type(ens).predict_proba

    def counting(self, images, batch_size=64):
        calls.append(len(images))
        return real(self, images, batch_size)

    monkeypatch.setattr(type(ens), "predict_proba", counting)
    images = ds.split("train").images
    sha = card_sha256(ens_folder)
    a = teacher_probs(ens, sha, images, "train", ds.fingerprint, tmp_path / "teacher", 16)
    b = teacher_probs(ens, sha, images, "train", ds.fingerprint, tmp_path / "teacher", 16)
    assert calls == [len(images)]
    np.testing.assert_array_equal(a, b)
    teacher_probs(ens, "another-ensemble", images, "train", ds.fingerprint, tmp_path / "teacher", 16)
    assert len(calls) == 2  # a different teacher invalidates the cache


def test_distill_refuses_a_complete_output_and_wrong_data(tmp_path, tiny_ensemble):
    from ensemble.distill import DistillConfig, distill

    ens, _ = tiny_ensemble
    with pytest.raises(ZooError, match="complete"):
        distill(ens, "synthetic:64", ens, DistillConfig(epochs=1))
    with pytest.raises(ZooError, match="fingerprint"):
        distill(ens, "synthetic:80", tmp_path / "s", DistillConfig(epochs=1, params=TINY))
