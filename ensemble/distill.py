"""Knowledge distillation: train one compact student on an ensemble's soft targets.

Why: an ensemble of M members costs M forward passes; a student trained to match its
probabilities keeps much of the gain at the cost of one small model (Hinton et al. 2015).

Protocol:

- teacher targets are the ensemble's probabilities (its own math, TTA and temperature
  included) on the *un-augmented* training images, computed once and cached in the run
  folder (``teacher/train.npy`` + ``teacher/meta.json``, keyed by the ensemble card hash and
  the data fingerprint); augmentation is then applied to the student's images only;
- loss per image: ``alpha · T² · KL(softmax(log t / T) ‖ softmax(log s / T)) + (1 − alpha) · CE(y, s)``
  where ``t`` / ``s`` are teacher / student probabilities (members output probabilities, so
  ``log p`` stands for the logits) — the T² keeps the soft term's gradient scale independent
  of ``T``;
- the hard-label accuracy on val drives early stopping (best weights restored).

``zoo.train`` has no hook for custom targets, so this is a compact ``model.fit`` of its own
(reusing ``zoo.train.make_optimizer`` for AdamW + warm-up/cosine) with Keras callbacks. The
output is an ordinary run folder with ``kind: "student"`` and ``parents: [ensemble card sha256]``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.combine import EPS
from ensemble.folder import Ensemble, load
from ensemble.members import _split_kwargs, load_member_data
from ensemble.metrics import scores
from zoo import ownership
from zoo.artifacts import atomic_path, card_sha256, load_npy, write_card, write_json, write_npy
from zoo.errors import ZooError
from zoo.train import write_history

log = logging.getLogger(__name__)

# A compact custom_cnn (about a quarter of the default's parameters).
COMPACT_CUSTOM_CNN = {"widths": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "stem_width": 16}
OWN_OUTPUTS = ("model.keras", "history.csv", "probs", "eval", "plots")


@dataclass
class DistillConfig:
    student: str = "custom_cnn"
    params: dict[str, Any] | None = None  # None: COMPACT_CUSTOM_CNN for custom_cnn, else the builder's defaults
    image_size: int | None = None  # None: the ensemble's input size
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    alpha: float = 0.7
    temperature: float = 2.0
    augment: str = "flip_rot90"
    patience: int = 4
    seed: int = 0
    teacher_batch_size: int = 64
    evaluate_splits: list[str] = field(default_factory=lambda: ["val", "test"])

    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ZooError(f"alpha must be in 0..1, got {self.alpha}")
        if self.temperature <= 0:
            raise ZooError(f"temperature must be > 0, got {self.temperature}")
        for name in ("epochs", "batch_size", "patience", "teacher_batch_size"):
            if getattr(self, name) < 1 and not (name == "patience" and getattr(self, name) == 0):
                raise ZooError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ZooError(f"learning_rate must be > 0, got {self.learning_rate}")

    def student_params(self) -> dict[str, Any]:
        if self.params is not None:
            return dict(self.params)
        return dict(COMPACT_CUSTOM_CNN) if self.student == "custom_cnn" else {}


# ----------------------------------------------------------------------------- loss
def soften(probs: np.ndarray, temperature: float, eps: float = EPS) -> np.ndarray:
    """``softmax(log(p + eps) / T)`` row-wise, float32."""
    z = np.log(np.asarray(probs, dtype=np.float64) + eps) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def distillation_loss(num_classes: int, alpha: float, temperature: float, eps: float = EPS):
    """Keras loss on ``y_true = [softened teacher (C), one-hot label (C)]`` and student probabilities."""
    from keras import ops

    c, t = num_classes, float(temperature)

    def distillation(y_true, y_pred):
        soft, hard = y_true[:, :c], y_true[:, c:]
        log_s = ops.log(ops.clip(y_pred, eps, 1.0))
        log_s_t = log_s / t - ops.logsumexp(log_s / t, axis=-1, keepdims=True)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, eps, 1.0)) - log_s_t), axis=-1)
        ce = -ops.sum(hard * log_s, axis=-1)
        return alpha * t * t * kl + (1.0 - alpha) * ce

    return distillation


def hard_accuracy(num_classes: int):
    """Accuracy against the one-hot half of the targets (named ``accuracy`` for the usual plots)."""
    from keras import ops

    def accuracy(y_true, y_pred):
        return ops.cast(ops.equal(ops.argmax(y_true[:, num_classes:], axis=-1), ops.argmax(y_pred, axis=-1)), "float32")

    return accuracy


def teacher_agreement(num_classes: int):
    from keras import ops

    def agreement(y_true, y_pred):
        return ops.cast(ops.equal(ops.argmax(y_true[:, :num_classes], axis=-1), ops.argmax(y_pred, axis=-1)), "float32")

    return agreement


# ----------------------------------------------------------------------------- teacher cache
def teacher_probs(ens: Ensemble, ens_sha: str, images: np.ndarray, split: str, fingerprint: str, cache: Path, batch_size: int) -> np.ndarray:
    """Ensemble probabilities on ``images``, from ``cache/<split>.npy`` when it matches, else computed and cached."""
    meta_path = cache / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    key = {"ensemble_card_sha256": ens_sha, "data_fingerprint": fingerprint, "rows": int(len(images))}
    path = cache / f"{split}.npy"
    if meta.get(split) == key and path.is_file():
        probs = load_npy(path)
        if probs.shape == (len(images), len(ens.classes)):
            log.info("teacher %s targets: cached (%s)", split, path)
            return probs
    log.info("teacher %s targets: running the ensemble on %d images", split, len(images))
    probs = ens.predict_proba(images, batch_size=batch_size)
    write_npy(path, probs)
    write_json(meta_path, {**meta, split: key})
    return probs


# ----------------------------------------------------------------------------- entry point
def _prepare(out: Path) -> None:
    # zoo.ownership: new, empty, or this command's own interrupted folder (marker); anything else is refused.
    if ownership.check_target(out, "student", resumable=True, force_flag=None) == "incomplete":
        unknown = [p.name for p in out.iterdir() if p.name not in (*OWN_OUTPUTS, "teacher", "logs", ownership.MARKER)]
        if unknown:
            raise ZooError(f"{out}: exists and holds {sorted(unknown)}; choose another --out or delete it")
        for name in OWN_OUTPUTS:  # leftovers of an interrupted distillation (the teacher cache is kept)
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    ownership.write_marker(out, "student")


def _targets(soft: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.concatenate([soft, np.eye(num_classes, dtype=np.float32)[labels]], axis=1)


def _pipeline(images, targets, batch_size, policy=None, shuffle=False, seed=0):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, targets)).cache()
    if shuffle:
        ds = ds.shuffle(min(len(images), 20_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if policy is not None:
        ds = ds.map(policy, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def distill(ensemble: str | os.PathLike, data: Any, out: str | os.PathLike, config: DistillConfig | None = None) -> Path:
    """Train ``config.student`` on the ensemble's soft targets into run folder ``out``; returns it."""
    import keras

    from zoo.augment import build_policy
    from zoo.augment.spec import covered_families
    from zoo.data import Dataset, load_dataset
    from zoo.evaluate import score_split
    from zoo.registry import get_spec
    from zoo.shift.families import artifact_families, union
    from zoo.train import TrainConfig, make_optimizer

    cfg = config or DistillConfig()
    cfg.validate()
    ens_folder = Path(ensemble)
    ens = load(ens_folder)
    ens_sha = card_sha256(ens_folder)
    spec = get_spec(cfg.student)
    params = cfg.student_params()
    out = Path(out)
    _prepare(out)

    if callable(data):
        data = data()
    teacher_ds = load_member_data(ens.members, data)
    size = int(cfg.image_size or ens.image_size)
    if size == teacher_ds.image_size:
        student_ds = teacher_ds
    else:
        source = teacher_ds.source if isinstance(data, Dataset) else str(data)
        student_ds = load_dataset(source, size, **_split_kwargs(ens.members[0].card))
        if student_ds.fingerprint != teacher_ds.fingerprint or any(
            not np.array_equal(student_ds.splits[s].labels, teacher_ds.splits[s].labels) for s in teacher_ds.splits
        ):
            raise ZooError(f"data at {size} px does not have the same rows as at {teacher_ds.image_size} px")
    c = student_ds.num_classes
    train_split, val_split = student_ds.split("train"), student_ds.split("val")

    t0 = time.time()
    cache = out / "teacher"
    t_train = teacher_probs(ens, ens_sha, teacher_ds.split("train").images, "train", teacher_ds.fingerprint, cache, cfg.teacher_batch_size)
    t_val = teacher_probs(ens, ens_sha, teacher_ds.split("val").images, "val", teacher_ds.fingerprint, cache, cfg.teacher_batch_size)
    teacher_seconds = time.time() - t0

    keras.utils.set_random_seed(cfg.seed)
    policy = build_policy(cfg.augment, num_classes=2 * c, seed=cfg.seed)  # labels travel as [soft | one-hot]
    train_ds = _pipeline(train_split.images, _targets(soften(t_train, cfg.temperature), train_split.labels, c),
                         cfg.batch_size, policy, shuffle=True, seed=cfg.seed)
    val_ds = _pipeline(val_split.images, _targets(soften(t_val, cfg.temperature), val_split.labels, c), cfg.batch_size)
    steps = int(np.ceil(len(train_split) / cfg.batch_size))

    model = spec.build(c, size, **params)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="adamw", learning_rate=cfg.learning_rate,
                       weight_decay=cfg.weight_decay, schedule="cosine", warmup_epochs=min(1.0, cfg.epochs / 4), seed=cfg.seed)
    model.compile(optimizer=make_optimizer(tcfg, 1.0, steps * cfg.epochs),
                  loss=distillation_loss(c, cfg.alpha, cfg.temperature),
                  metrics=[hard_accuracy(c), teacher_agreement(c)])
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if cfg.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=cfg.patience,
                                                       restore_best_weights=True))
    t1 = time.time()
    hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose="auto")
    train_seconds = time.time() - t1
    rows = _history_rows(hist.history)

    # Save a freshly built copy: no optimizer state, no reference to the custom loss.
    clean = spec.build(c, size, **params)
    clean.set_weights(model.get_weights())
    with atomic_path(out / "model.keras") as tmp:
        clean.save(tmp)
    write_history(out / "history.csv", rows)
    from zoo import plots

    plots.training_curves(out / "plots" / "training_curves.png", rows)

    metrics, teacher_metrics, agreement = {}, {}, {}
    for split in cfg.evaluate_splits:
        part = student_ds.splits.get(split)
        if part is None or len(part) == 0:
            continue
        metrics[split], probs = score_split(out, clean, split, part, student_ds.class_names, f"{out.name} (student) · {split}")
        t = t_val if split == "val" else _stored_or_predict(ens, split, teacher_ds.splits[split], cfg.teacher_batch_size)
        teacher_metrics[split] = scores(t, part.labels, student_ds.class_names)
        agreement[split] = float((t.argmax(1) == probs.argmax(1)).mean())

    best = max(range(len(rows)), key=lambda i: rows[i].get("val_accuracy", -1.0)) if rows else 0
    card = {
        "kind": "student",
        "name": out.name,
        "member": spec.name,
        "family": spec.family,
        "params": params,
        "parameters": int(clean.count_params()),
        "classes": list(student_ds.class_names),
        "input": {"image_size": size, "channels": 3, "dtype": "float32", "range": [0, 255], "color": "RGB",
                  "resize": "bilinear", "preprocessing": "inside model"},
        "model_file": "model.keras",
        "data": {**student_ds.summary(), "seed": _split_kwargs(ens.members[0].card).get("seed", 0)},
        "training": {
            "config": asdict(cfg),
            "epochs_run": len(rows),
            "best_epoch": best + 1,
            "stopped_early": len(rows) < cfg.epochs,
            "seconds": round(train_seconds, 1),
            "augment": cfg.augment,
            "loss": "alpha*T^2*KL(softmax(log t/T) || softmax(log s/T)) + (1-alpha)*CE(y, s)",
        },
        "distillation": {
            "alpha": cfg.alpha,
            "temperature": cfg.temperature,
            "teacher": {"path": os.path.relpath(ens.folder, out.resolve()), "abs_path": str(ens.folder),
                        "card_sha256": ens_sha, "method": ens.spec["method"], "members": len(ens.members),
                        "targets": "ensemble probabilities on un-augmented training images (teacher/train.npy)",
                        "seconds": round(teacher_seconds, 1)},
            "teacher_metrics": teacher_metrics,
            "student_teacher_agreement": agreement,
        },
        "metrics": metrics,
        "parents": [ens_sha],
        # what the teacher trained for plus the student's own augmentation (zoo.shift.families)
        "augment_families": union(artifact_families(ens.folder, ens.card), covered_families(cfg.augment)),
    }
    write_card(out, card)
    log.info("student complete: %s (%s)", out, ", ".join(f"{s} accuracy {m['accuracy']:.4f}" for s, m in metrics.items()))
    return out


def _stored_or_predict(ens: Ensemble, split: str, part, batch_size: int) -> np.ndarray:
    """The ensemble's stored ``probs/<split>.npy`` when it covers these rows, else run it."""
    p, y = ens.folder / "probs" / f"{split}.npy", ens.folder / "probs" / f"{split}_labels.npy"
    if p.is_file() and y.is_file() and np.array_equal(load_npy(y), part.labels):
        return load_npy(p)
    return ens.predict_proba(part.images, batch_size)


def _history_rows(history: dict[str, list[float]]) -> list[dict[str, Any]]:
    n = len(next(iter(history.values()), []))
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"epoch": i + 1, "phase": "distill"}
        row.update({k: float(v[i]) for k, v in history.items()})
        rows.append(row)
    return rows


