"""Distillation: the loss is the documented formula; a tiny ensemble teaches a tiny student."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from zoo.artifacts import card_identity, card_sha256, read_card, update_card, write_card
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
    np.testing.assert_allclose(
        np.asarray(distillation_loss(c, 0.0, t)(y_true, student.astype(np.float32))), ce, rtol=1e-4
    )
    same = np.asarray(distillation_loss(c, 1.0, t)(y_true, teacher.astype(np.float32)))
    np.testing.assert_allclose(same, 0.0, atol=1e-4)


def test_config_validation():
    from ensemble.distill import DistillConfig

    DistillConfig().validate()  # the defaults pass
    with pytest.raises(ZooError, match="alpha must be in 0..1"):
        DistillConfig(alpha=1.5).validate()
    with pytest.raises(ZooError, match="temperature must be > 0"):
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
        write_card(
            folder,
            {
                "kind": "member",
                "name": f"m{i}",
                "member": "custom_cnn",
                "params": TINY,
                "classes": list(ds.class_names),
                "input": dict(INPUT),
                "data": ds.summary(),
                "metrics": {},
            },
        )
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
    args = parser.parse_args(
        [
            "distill",
            str(ens),
            "--data",
            "synthetic:64",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--params",
            json.dumps(TINY),
            "--alpha",
            "0.5",
            "--temperature",
            "3",
        ]
    )
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
    # One training loop: zoo.train wrote the run (checkpoints gone once complete), with the teacher recorded.
    assert card["distillation"]["teacher"]["card_sha256"] == card_sha256(ens)
    assert "consistent" in card["distillation"]["teacher"]["targets"]
    assert not (out / "checkpoint").exists() and not (out / "teacher").exists()
    assert set(card["distillation"]["student_teacher_agreement"]) == {"val", "test"}
    assert (out / "history.csv").read_text().startswith("epoch,")
    # A student run can itself be an ensemble member.
    from ensemble.members import open_member

    assert open_member(out).card["kind"] == "student"


def test_teacher_model_is_the_ensemble(tiny_ensemble):
    """The Keras teacher computes exactly the ensemble's probabilities (its stored formula)."""
    from ensemble import load
    from ensemble.distill import teacher_model

    ens_folder, ds = tiny_ensemble
    ens = load(ens_folder)
    x = ds.split("val").images[:12].astype(np.float32)
    np.testing.assert_allclose(np.asarray(teacher_model(ens)(x)), ens.predict_proba(x), atol=1e-5)


def test_teacher_sees_exactly_the_students_augmented_pixels(tiny_ensemble):
    """The target hook runs after augmentation on the very batch the student is fed."""
    import tensorflow as tf

    from zoo.augment import build_policy
    from zoo.data.batches import make_dataset
    from zoo.train import with_targets

    _, ds = tiny_ensemble
    split = ds.split("train")
    ramp = tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32), (1, 32, 32, 3))

    def checksum(x):  # position-sensitive: any flip/rotation of an image changes it
        return tf.reduce_sum(x * ramp, axis=(1, 2, 3))

    def teacher_hook(images, labels):
        return tf.concat([labels, checksum(images)[:, None]], axis=-1)

    policy = build_policy("flip_rot90", num_classes=8, seed=3)
    train_ds = make_dataset(split, 8, 8, training=True, policy=policy, seed=3, epochs=(0, 1))
    seen, augmented = 0, 0
    for x, y in with_targets(train_ds, teacher_hook):
        np.testing.assert_allclose(y[:, -1].numpy(), checksum(x).numpy(), rtol=1e-6)
        originals = {float(v) for v in checksum(tf.constant(split.images, tf.float32)).numpy()}
        augmented += sum(float(v) not in originals for v in y[:, -1].numpy())
        seen += len(x)
    assert seen >= len(split) - 8 and augmented > 0  # the teacher saw augmented images, not the stored ones


def test_student_resumes_after_interruption_without_gap(tmp_path, tiny_ensemble, monkeypatch):
    from ensemble.distill import DistillConfig, distill
    from zoo.checkpoint import TrainingState

    ens, ds = tiny_ensemble
    out = tmp_path / "student"
    real_save = TrainingState.save

    def crash_after_second_epoch(self):
        real_save(self)
        if self.epoch == 2:
            raise KeyboardInterrupt("simulated kill")

    cfg = DistillConfig(epochs=3, batch_size=16, params=TINY, patience=0)
    monkeypatch.setattr(TrainingState, "save", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        distill(ens, ds, out, cfg)
    assert not (out / "card.json").exists()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and state["config"]["hooks"]["teacher_identity_sha256"] == card_identity(read_card(ens))
    with pytest.raises(ZooError, match="--resume"):
        distill(ens, ds, out, cfg)
    monkeypatch.setattr(TrainingState, "save", real_save)
    teacher_card = (ens / "card.json").read_bytes()  # the fixture is shared: restored byte for byte
    try:  # the teacher evaluated while the student waits: the same teacher, so the student resumes
        update_card(ens, verify=False, metrics={**read_card(ens)["metrics"], "val-shifted": {"accuracy": 0.5}})
        run = distill(ens, ds, out, cfg, resume=True)
    finally:
        (ens / "card.json").write_bytes(teacher_card)
    import csv

    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs[2] < lrs[1]  # the schedule continued, not restarted
    assert read_card(run)["kind"] == "student"


def test_distill_refuses_a_complete_output_and_wrong_data(tmp_path, tiny_ensemble):
    from ensemble.distill import DistillConfig, distill

    ens, _ = tiny_ensemble
    with pytest.raises(ZooError, match="complete"):
        distill(ens, "synthetic:64", ens, DistillConfig(epochs=1))
    with pytest.raises(ZooError, match="fingerprint"):
        distill(ens, "synthetic:80", tmp_path / "s", DistillConfig(epochs=1, params=TINY))
