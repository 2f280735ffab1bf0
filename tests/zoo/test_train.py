import csv
import json
import math

import numpy as np
import pytest

from tests.helpers import TINY_CNN, train_snapshots
from zoo import train as train_module
from zoo.artifacts import read_card
from zoo.checkpoint import TrainingState, capture_rng
from zoo.errors import ZooError
from zoo.runs import load_model, load_probs
from zoo.train import train
from zoo.train_config import TrainConfig, resolve_phases, snapshot_cycles


def test_run_folder_follows_the_artifact_contract(trained_run, synthetic_small):
    card = read_card(trained_run)
    assert card["kind"] == "member" and card["member"] == "custom_cnn"
    assert card["classes"] == synthetic_small.class_names
    assert card["input"]["image_size"] == 24 and card["input"]["preprocessing"] == "inside model"
    assert card["data"]["fingerprint"] == synthetic_small.fingerprint
    assert card["training"]["config"]["optimizer"] == "adamw"
    assert card["training"]["config"]["weight_decay"] == 1e-5
    assert card["training"]["epochs_run"] == 2
    assert {
        "model.keras",
        "history.csv",
        "probs/val.npy",
        "probs/val_labels.npy",
        "probs/test.npy",
        "eval/val/metrics.json",
        "eval/val/confusion_matrix.png",
        "eval/val/reliability.png",
        "plots/training_curves.png",
    } <= set(card["files"])
    assert not (trained_run / "checkpoint").exists()
    for split in ("val", "test"):
        assert 0.0 <= card["metrics"][split]["accuracy"] <= 1.0
    rows = list(csv.DictReader(open(trained_run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])


def test_saved_model_reloads_safely_and_matches_stored_probabilities(trained_run, synthetic_small):
    model = load_model(trained_run)
    probs, labels = load_probs(trained_run, "val")
    np.testing.assert_array_equal(labels, synthetic_small.split("val").labels)
    again = model.predict(synthetic_small.split("val").images.astype("float32"), verbose=0)
    np.testing.assert_allclose(again, probs, atol=1e-5)


def test_existing_output_is_never_overwritten(trained_run, synthetic_small):
    with pytest.raises(ZooError, match="a complete artifact already exists there"):
        train("custom_cnn", synthetic_small, trained_run, image_size=24, params=TINY_CNN, epochs=1)


def test_resume_continues_after_interruption_without_gap_or_repeat(tmp_path, synthetic_small, monkeypatch):
    out = tmp_path / "run"
    real_save = TrainingState.save

    def crash_after_second_epoch(self):
        real_save(self)
        if self.epoch == 2:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(TrainingState, "save", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(
            "custom_cnn",
            synthetic_small,
            out,
            image_size=24,
            params=TINY_CNN,
            epochs=4,
            batch_size=32,
            tensorboard=False,
            patience=10,
        )
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert not (out / "card.json").exists()
    saved_rng = state["rng"]
    with pytest.raises(ZooError, match="--resume"):
        train(
            "custom_cnn",
            synthetic_small,
            out,
            image_size=24,
            params=TINY_CNN,
            epochs=4,
            batch_size=32,
            tensorboard=False,
            patience=10,
        )
    with pytest.raises(ZooError, match="configuration changed"):
        train(
            "custom_cnn",
            synthetic_small,
            out,
            image_size=24,
            params=TINY_CNN,
            epochs=5,
            batch_size=32,
            tensorboard=False,
            patience=10,
            resume=True,
        )
    monkeypatch.setattr(TrainingState, "save", real_save)
    restored = {}
    real_restore = train_module.restore_rng

    def checked_restore(model, augment_rng, states):
        real_restore(model, augment_rng, states)
        restored.update(capture_rng(model, augment_rng))

    monkeypatch.setattr(train_module, "restore_rng", checked_restore)
    run = train(
        "custom_cnn",
        synthetic_small,
        out,
        image_size=24,
        params=TINY_CNN,
        epochs=4,
        batch_size=32,
        tensorboard=False,
        patience=10,
        resume=True,
    )
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    # The learning-rate schedule continued where it stopped (optimizer state restored), not from warm-up.
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs[2] < lrs[1] and lrs[3] < lrs[2]
    # The resumed epoch continues the checkpointed generator states (dropout, augmentation), not fresh ones:
    # they had advanced (state = [seed, counter]) where a fresh build starts at counter 0.
    assert restored["model"] == saved_rng["model"] and restored["augment"] == saved_rng["augment"]
    assert saved_rng["model"] and all(state[1] > 0 for state in saved_rng["model"])


def test_bad_training_options_are_clear(synthetic_small, tmp_path):
    with pytest.raises(ZooError, match="optimizer 'sgd'"):
        train("custom_cnn", synthetic_small, tmp_path / "r", image_size=24, optimizer="sgd")
    with pytest.raises(ZooError, match="unknown training option"):
        train("custom_cnn", synthetic_small, tmp_path / "r", image_size=24, epoch=3)
    with pytest.raises(ZooError, match="loaded at 24px"):
        train("custom_cnn", synthetic_small, tmp_path / "r", image_size=32)
    assert not (tmp_path / "r").exists()


OPTIMIZER_CLASSES = {"adam": "Adam", "adamw": "AdamW", "nadam": "Nadam", "lion": "Lion"}


def test_each_optimizer_name_makes_its_keras_optimizer():
    for name, cls in OPTIMIZER_CLASSES.items():
        opt = train_module.make_optimizer(TrainConfig(optimizer=name, weight_decay=1e-4), 1.0, 10)
        assert type(opt).__name__ == cls, name
        if name in ("adamw", "lion"):
            assert opt.weight_decay == pytest.approx(1e-4)


@pytest.mark.parametrize("optimizer", ["adam", "nadam", "lion"])
def test_every_optimizer_trains(optimizer, tmp_path, synthetic_small, monkeypatch):
    made = []

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    real = train_module.make_optimizer
    monkeypatch.setattr(train_module, "make_optimizer", spy)
    run = train(
        "custom_cnn",
        synthetic_small,
        tmp_path / optimizer,
        image_size=24,
        params=TINY_CNN,
        epochs=1,
        batch_size=64,
        optimizer=optimizer,
        tensorboard=False,
        evaluate_splits=("val",),
    )
    assert [type(o).__name__ for o in made] == [OPTIMIZER_CLASSES[optimizer]]
    assert int(made[0].iterations.numpy()) > 0  # it took the training steps
    assert read_card(run)["training"]["config"]["optimizer"] == optimizer


def test_phases_from_recipe_only_when_pretrained():
    recipe = {
        "phases": [
            {"name": "head", "trainable_fraction": 0.0, "epochs": 2, "lr_scale": 1.0},
            {"name": "finetune", "trainable_fraction": 0.3, "lr_scale": 0.1},
        ]
    }
    cfg = TrainConfig(epochs=10)
    assert [p.name for p in resolve_phases(cfg, recipe, pretrained=False)] == ["train"]
    head, fine = resolve_phases(cfg, recipe, pretrained=True)
    assert (head.epochs, fine.epochs, fine.lr_scale, fine.trainable_fraction) == (2, 8, 0.1, 0.3)
    _, fine = resolve_phases(TrainConfig(epochs=10, trainable_fraction=0.4), recipe, pretrained=True)
    assert fine.trainable_fraction == 0.4


def test_class_weights_and_balanced_pipeline(synthetic_small):
    from zoo.data.batches import class_weights, make_dataset

    split = synthetic_small.split("train")
    w = class_weights(split.labels, 8)
    counts = np.bincount(split.labels, minlength=8)
    assert w[counts.argmin()] > w[counts.argmax()]
    ds = make_dataset(split, 8, 16, training=True, balance=20, seed=0)
    labels = np.concatenate([y.numpy().argmax(1) for _, y in ds])
    assert len(labels) == 20 * 8
    assert np.bincount(labels, minlength=8).min() >= 8  # every class drawn, near-uniform


def counting_targets():
    """A target hook that passes the labels through and counts the batches it ran on: ``(hook, calls)``."""
    import tensorflow as tf

    calls = {"batches": 0}

    def count(labels):
        calls["batches"] += 1
        return labels

    def targets(images, labels):
        out = tf.py_function(count, [labels], tf.float32)
        out.set_shape(labels.shape)
        return out

    return targets, calls


def test_teacher_targets_on_val_are_computed_once_and_on_train_every_epoch(tmp_path, synthetic_small):
    """A target hook (a distillation teacher) runs on every augmented train batch of every epoch,
    but on the plain val batches only in the first epoch: they never change, their targets are replayed."""

    from zoo.data.batches import steps_per_epoch
    from zoo.train import TrainHooks

    targets, calls = counting_targets()
    epochs, batch = 3, 4
    train(
        "custom_cnn",
        synthetic_small,
        tmp_path / "run",
        image_size=24,
        params=TINY_CNN,
        epochs=epochs,
        batch_size=batch,
        tensorboard=False,
        patience=10,
        hooks=TrainHooks(targets=targets),
    )
    train_batches = epochs * steps_per_epoch(synthetic_small.split("train"), batch, 8, None)
    val_batches = math.ceil(len(synthetic_small.split("val")) / batch)
    assert val_batches >= 3
    # prefetching may run the hook on at most two train batches the fit never takes
    assert train_batches + val_batches <= calls["batches"] <= train_batches + val_batches + 2


def test_with_targets_cache_replays_the_first_pass(synthetic_small):

    from zoo.data.batches import make_dataset
    from zoo.train import with_targets

    split = synthetic_small.split("val")
    for cache, runs in ((True, 1), (False, 2)):
        targets, calls = counting_targets()
        ds = with_targets(make_dataset(split, 8, 16, training=False), targets, cache=cache)
        passes = [np.concatenate([y.numpy() for _, y in ds]) for _ in range(2)]
        np.testing.assert_array_equal(passes[0], passes[1])
        assert calls["batches"] == runs * math.ceil(len(split) / 16)


MIRRORED = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from zoo.artifacts import read_card
from zoo.train import train
# ConvNeXt: its per-sample drop path and layer scale are the layers most likely to break under replicas
tiny = {"depths": [1, 1, 1, 1], "widths": [8, 16, 24, 32], "drop_path_rate": 0.1}
run = train("convnext_zepto", "synthetic:64", sys.argv[1], image_size=32, params=tiny,
            epochs=1, batch_size=16, strategy="mirrored", tensorboard=False, evaluate_splits=("val",))
card = read_card(run)
print(json.dumps({**card["training"], "val_nll": card["metrics"]["val"]["nll"]}))
"""


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    """tf.distribute.MirroredStrategy through zoo.train, the CPU split into two logical devices, on a tiny ConvNeXt."""
    import subprocess
    import sys

    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    r = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    training = json.loads(r.stdout.strip().splitlines()[-1])
    assert training["strategy"] == "MirroredStrategy" and training["replicas"] == 2
    assert training["epochs_run"] == 1 and math.isfinite(training["val_nll"])


class _Terminal:
    def isatty(self) -> bool:
        return True


def test_keras_shows_its_bar_on_a_terminal_and_one_line_per_epoch_elsewhere(monkeypatch):
    import io

    from zoo.progress import keras_verbosity

    monkeypatch.delenv("ZOO_PROGRESS", raising=False)
    assert keras_verbosity(_Terminal()) == 1
    assert keras_verbosity(io.StringIO()) == 2 and keras_verbosity(object()) == 2  # a file, or no isatty at all
    monkeypatch.setenv("ZOO_PROGRESS", "0")
    assert keras_verbosity(_Terminal()) == 2


def test_a_redirected_training_log_holds_epoch_lines_not_bar_frames(tmp_path, synthetic_small, capsys):
    train("custom_cnn", synthetic_small, tmp_path / "run", image_size=24, params=TINY_CNN, epochs=2, batch_size=8)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "\r" not in out and "\b" not in out  # Keras' in-place redraws


def test_snapshot_cycles_split_the_epochs_into_restarted_phases():
    assert [(p.name, p.epochs) for p in snapshot_cycles(20, 3)] == [("cycle1", 7), ("cycle2", 7), ("cycle3", 6)]
    assert [p.epochs for p in snapshot_cycles(4, 4)] == [1, 1, 1, 1]
    phases = resolve_phases(TrainConfig(epochs=5, snapshots=2), {}, pretrained=False)
    assert [(p.name, p.epochs, p.lr_scale, p.trainable_fraction) for p in phases] == [
        ("cycle1", 3, 1.0, None),
        ("cycle2", 2, 1.0, None),
    ]
    assert [p.name for p in resolve_phases(TrainConfig(epochs=5), {}, pretrained=False)] == ["train"]
    recipe = {"phases": [{"name": "head", "epochs": 2, "trainable_fraction": 0.0}, {"name": "finetune"}]}
    with pytest.raises(ZooError, match="snapshots need a model trained in one phase"):
        resolve_phases(TrainConfig(epochs=5, snapshots=2), recipe, pretrained=True)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"snapshots": 0}, r"snapshots must be in 1..epochs \(4\), got 0"),
        ({"snapshots": 5}, r"snapshots must be in 1..epochs \(4\), got 5"),
        ({"snapshots": 2, "schedule": "constant"}, "need schedule 'cosine'"),
        ({"snapshots": 2, "phases": [{"name": "a", "epochs": 2}]}, "cannot be combined"),
    ],
)
def test_bad_snapshot_options_are_clear(options, message, synthetic_small, tmp_path):
    with pytest.raises(ZooError, match=message):
        train("custom_cnn", synthetic_small, tmp_path / "r", image_size=24, params=TINY_CNN, epochs=4, **options)
    assert not (tmp_path / "r").exists()


def test_snapshots_restart_the_schedule_and_leave_carded_members(snapshot_run, synthetic_small):
    run = snapshot_run
    card = read_card(run)  # verifies the run's own files: the snapshots inside are not among them
    assert card["snapshots"] == ["snapshots/cycle1"]
    assert not any(f.startswith("snapshots/") for f in card["files"])
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [(r["phase"], int(r["phase_epoch"])) for r in rows] == [
        ("cycle1", 1),
        ("cycle1", 2),
        ("cycle2", 1),
        ("cycle2", 2),
    ]
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs[1] < lrs[0] and lrs[2] > 10 * lrs[1] and lrs[3] < lrs[2]  # decays, restarts, decays again

    snap = run / "snapshots" / "cycle1"
    scard = read_card(snap)  # a complete member folder of its own, its files hashed by its own card
    assert scard["kind"] == "member" and scard["name"] == f"{run.name}_cycle1"
    assert scard["snapshot"] == {"of": run.name, "cycle": 1, "cycles": 2}
    assert scard["data"]["fingerprint"] == card["data"]["fingerprint"] and scard["input"] == card["input"]
    assert scard["training"]["epochs_run"] == 2 and [p["name"] for p in scard["training"]["phases"]] == ["cycle1"]
    assert scard["training"]["stopped_early"] is False
    srows = list(csv.DictReader(open(snap / "history.csv")))
    assert srows == rows[:2]
    # The snapshot is cycle 1's best epoch: its stored val accuracy is that epoch's, and its model gives its probs.
    best = max(rows[:2], key=lambda r: float(r["val_accuracy"]))
    assert scard["training"]["best_epoch"] == int(best["epoch"])
    assert scard["metrics"]["val"]["accuracy"] == pytest.approx(float(best["val_accuracy"]), abs=1e-6)
    probs, _ = load_probs(snap, "val")
    images = synthetic_small.split("val").images.astype("float32")
    np.testing.assert_allclose(load_model(snap).predict(images, verbose=0), probs, atol=1e-5)
    assert not np.allclose(probs, load_probs(run, "val")[0], atol=1e-4), "the snapshot is the final model again"


def test_snapshots_survive_an_interruption_in_a_later_cycle(tmp_path, synthetic_small, snapshot_run, monkeypatch):
    out = tmp_path / "run"
    real_save = TrainingState.save

    def crash_in_cycle2(self):
        real_save(self)
        if self.phase == 1 and self.epoch == 1:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(TrainingState, "save", crash_in_cycle2)
    with pytest.raises(KeyboardInterrupt):
        train_snapshots(out, synthetic_small)
    assert not (out / "snapshots").exists() and not (out / "card.json").exists()
    monkeypatch.setattr(TrainingState, "save", real_save)
    run = train_snapshots(out, synthetic_small, resume=True)
    # Deterministic training: the resumed run's snapshot and final model are the uninterrupted run's.
    for sub in ("snapshots/cycle1", "."):
        np.testing.assert_array_equal(load_probs(run / sub, "val")[0], load_probs(snapshot_run / sub, "val")[0])


def test_a_later_phase_loads_the_best_weights_without_an_optimizer_warning(snapshot_training):
    """Each cycle starts with a fresh optimizer: the previous best's optimizer variables are skipped on purpose."""
    run, warned = snapshot_training  # cycle 2 began from cycle 1's best weights
    assert read_card(run)["training"]["phases"][1]["name"] == "cycle2"
    assert "the capture works" in warned
    assert [m for m in warned if "Skipping variable loading" in m] == []
    # the zoo orders every epoch itself and tells Keras not to shuffle (Keras warns it would ignore it anyway)
    assert [m for m in warned if "shuffle=True" in m] == []
