"""Knowledge distillation: a compact student trained on an ensemble's soft targets, through ``zoo.train``.

Why: an ensemble of M members costs M forward passes; a student trained to match its
probabilities keeps much of the gain at the cost of one small model (Hinton et al. 2015).

Protocol (consistent teaching, Beyer et al. 2022, "Knowledge distillation: a good teacher is
patient and consistent"):

- the teacher is the ensemble as one Keras model (:func:`teacher_model`: every member,
  resizing the input to its own size in its graph, then the ensemble's own combination,
  temperature and TTA); it runs on **the same augmented batch the student sees** — the
  student's pipeline calls it after augmentation, through the generic target hook of
  :class:`zoo.train.TrainHooks` (``zoo`` never imports this package);
- loss per image: ``alpha · T² · KL(softmax(log t / T) ‖ softmax(log s / T)) + (1 − alpha) · CE(y, s)``
  where ``t`` / ``s`` are teacher / student probabilities (members output probabilities, so
  ``log p`` stands for the logits) — the T² keeps the soft term's gradient scale independent
  of ``T``;
- the hard-label accuracy on val drives early stopping (best weights restored).

Training is ``zoo.train.train`` itself, so the student gets the same checkpoints (``resume``
after ``kill -9``), schedule, history, plots and card writer as a member; the card gets
``kind: "student"``, ``parents: [ensemble card sha256]`` and a ``distillation`` section.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.combine import EPS
from ensemble.folder import Ensemble, load
from ensemble.members import load_member_data
from ensemble.metrics import scores
from zoo.artifacts import card_identity, card_sha256, load_npy, probs_files
from zoo.augment.spec import covered_families
from zoo.errors import ZooError
from zoo.shift.families import artifact_families, union
from zoo.stage_config import DistillConfig
from zoo.train import TrainHooks

log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------- teacher
def teacher_model(ens: Ensemble, input_size: int | None = None):
    """The ensemble as one Keras model ``images -> probabilities`` (its exact combination formula).

    Members are the ensemble's (zero-weight members were already left out when it was built),
    each behind its in-graph resize; TTA views are averaged per member like ``ensemble.tta``.
    ``input_size`` other than the ensemble's puts one more resize in front (a student trained
    at another size still teaches on its own augmented pixels).
    """
    import keras
    from keras import ops

    from zoo.runs import resized_input

    spec, size = ens.spec, ens.image_size
    eps, temp = float(spec.get("eps", EPS)), float(spec.get("temperature", 1.0))
    views = ens.tta or ["identity"]
    # Distinct names: members of one family share a model name, one Keras graph needs unique ones.
    models = [keras.Model(m.input, m.output, name=f"member{i}") for i, m in enumerate(ens.models())]
    inputs = keras.Input((size, size, 3), name="images")

    def view(x, name):
        if name.startswith("flip"):
            x = ops.flip(x, axis=2)
        k = 0 if name in ("identity", "flip") else int(name.rsplit("rot", 1)[1]) // 90
        for _ in range(k):  # numpy.rot90(x, 1, axes=(1, 2)): flip W then swap H and W
            x = ops.transpose(ops.flip(x, axis=2), (0, 2, 1, 3))
        return x

    probs = []
    for m in models:
        outs = [m(view(inputs, v), training=False) for v in views]
        probs.append(outs[0] if len(outs) == 1 else sum(outs[1:], outs[0]) / len(outs))
    if spec["method"] == "vote":
        w = np.asarray(spec["weights"], dtype=np.float32)
        z = ops.log(sum(float(wi) * p for wi, p in zip(w, probs)) + eps)
    else:
        feats = [ops.log(p + eps) if spec["features"] == "log" else p for p in probs]
        x = ops.concatenate(feats, axis=-1)
        coef = np.asarray(spec["coef"], dtype=np.float32)
        z = ops.matmul(x, ops.convert_to_tensor(coef.T)) + ops.convert_to_tensor(
            np.asarray(spec["intercept"], np.float32)
        )
    out = ops.softmax(z / temp, axis=-1)
    teacher = keras.Model(inputs, out, name="teacher")
    teacher.trainable = False
    return teacher if input_size in (None, size) else resized_input(teacher, int(input_size))


def target_hook(teacher, temperature: float, eps: float = EPS):
    """``(augmented images, labels) -> [softened teacher probabilities | labels]`` for :class:`zoo.train.TrainHooks`."""
    from keras import ops

    t = float(temperature)

    def targets(images, labels):
        p = teacher(images, training=False)
        z = ops.log(ops.clip(p, eps, 1.0)) / t
        return ops.concatenate([ops.softmax(z, axis=-1), ops.cast(labels, p.dtype)], axis=-1)

    return targets


# ----------------------------------------------------------------------------- entry point
def distill(
    ensemble: str | os.PathLike,
    data: Any,
    out: str | os.PathLike,
    config: DistillConfig | None = None,
    resume: bool = False,
) -> Path:
    """Train ``config.student`` on the ensemble's soft targets into run folder ``out`` (``zoo.train``); returns it.

    Steps: load the teacher ensemble; the data at the teacher's and the student's sizes (same rows);
    the training hooks (targets from the teacher on each augmented batch, the distillation loss, the
    card's distillation section); then one ``zoo.train`` run with the student's schedule.
    """
    cfg = config or DistillConfig()
    cfg.validate()
    ens = load(Path(ensemble))
    teacher_ds, student_ds = _student_data(ens, data() if callable(data) else data, cfg)
    hooks = _hooks(ens, teacher_ds, student_ds, cfg)
    return _train_student(cfg, student_ds, out, hooks, resume)


def _student_data(ens: Ensemble, data: Any, cfg: DistillConfig):
    """``(teacher's dataset, student's dataset)``: the same rows, at the ensemble's and the student's size."""
    from zoo.data import Dataset, load_dataset, split_kwargs

    teacher_ds = load_member_data(ens.members, data, size=ens.image_size)
    size = int(cfg.image_size or ens.image_size)
    if size == teacher_ds.image_size:
        return teacher_ds, teacher_ds
    source = teacher_ds.source if isinstance(data, Dataset) else str(data)
    student_ds = load_dataset(source, size, **split_kwargs(ens.members[0].card.get("data")))
    if student_ds.fingerprint != teacher_ds.fingerprint or any(
        not np.array_equal(student_ds.splits[s].labels, teacher_ds.splits[s].labels) for s in teacher_ds.splits
    ):
        raise ZooError(f"data at {size} px does not have the same rows as at {teacher_ds.image_size} px")
    return teacher_ds, student_ds


def _hooks(ens: Ensemble, teacher_ds, student_ds, cfg: DistillConfig) -> TrainHooks:
    """What makes a ``zoo.train`` run a distillation: targets, loss, metrics, identity and card section."""
    c = student_ds.num_classes
    ens_sha, ens_identity = card_sha256(ens.folder), card_identity(ens.card)
    teacher = teacher_model(ens, student_ds.image_size)

    def card(run: Path, model, dataset, metrics: dict[str, Any]) -> dict[str, Any]:
        teacher_metrics, agreement = {}, {}
        for split in metrics:
            part = teacher_ds.splits[split]
            t = _stored_or_predict(ens, split, part, cfg.teacher_batch_size)
            teacher_metrics[split] = scores(t, part.labels, student_ds.class_names)
            student = load_npy(run / probs_files(split)[0])
            agreement[split] = float((t.argmax(1) == student.argmax(1)).mean())
        return {
            "distillation": {
                "alpha": cfg.alpha,
                "temperature": cfg.temperature,
                "loss": "alpha*T^2*KL(softmax(log t/T) || softmax(log s/T)) + (1-alpha)*CE(y, s)",
                "teacher": {
                    "path": os.path.relpath(ens.folder, run.resolve()),
                    "abs_path": str(ens.folder),
                    "card_sha256": ens_sha,
                    "identity_sha256": ens_identity,
                    "method": ens.spec["method"],
                    "members": [m.name for m in ens.members],
                    "image_size": ens.image_size,
                    "targets": "teacher run on each augmented training batch the student sees (consistent teaching)",
                },
                "teacher_metrics": teacher_metrics,
                "student_teacher_agreement": agreement,
            },
            # what the teacher trained for plus the student's own augmentation (zoo.shift.families)
            "augment_families": union(artifact_families(ens.folder, ens.card), covered_families(cfg.augment)),
        }

    return TrainHooks(
        targets=target_hook(teacher, cfg.temperature),
        loss=distillation_loss(c, cfg.alpha, cfg.temperature),
        metrics=[hard_accuracy(c), teacher_agreement(c)],
        kind="student",
        # the teacher by identity: evaluating it while the student is interrupted does not block --resume
        identity={"teacher_identity_sha256": ens_identity, "alpha": cfg.alpha, "temperature": cfg.temperature},
        card=card,
        parents=[ens_sha],
    )


def _train_student(cfg: DistillConfig, student_ds, out, hooks: TrainHooks, resume: bool) -> Path:
    """One ``zoo.train`` run: AdamW with a cosine schedule, no label smoothing or class weights (soft targets)."""
    from zoo.train import train

    return train(
        cfg.student,
        student_ds,
        out,
        image_size=student_ds.image_size,
        params=cfg.student_params(),
        resume=resume,
        evaluate_splits=tuple(cfg.evaluate_splits),
        hooks=hooks,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        optimizer="adamw",
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        schedule="cosine",
        warmup_epochs=min(1.0, cfg.epochs / 4),
        label_smoothing=0.0,
        class_weights=False,
        augment=cfg.augment,
        patience=cfg.patience or cfg.epochs,
        seed=cfg.seed,
        tensorboard=cfg.tensorboard,
    )


def _stored_or_predict(ens: Ensemble, split: str, part, batch_size: int) -> np.ndarray:
    """The ensemble's stored ``probs/<split>.npy`` when it covers these rows, else run it."""
    p, y = (ens.folder / rel for rel in probs_files(split))
    if p.is_file() and y.is_file() and np.array_equal(load_npy(y), part.labels):
        return load_npy(p)
    return ens.predict_proba(part.images, batch_size)
