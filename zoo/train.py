"""Train one member into a run folder, resumable after any interruption.

Recipe defaults are the course project's (AdamW lr 1e-3 / wd 1e-5, dropout 0.35 and L1L2 1e-3 in the
head, early stopping with patience 4 restoring the best epoch, batch 256) plus what made the
baseline stable here: a warm-up + cosine learning-rate schedule and label smoothing.

One loop for members and students: :func:`train` checks the options (:mod:`zoo.train_config`) and
the folder, loads the data, seeds, fits each phase, then finishes (the clean model, its scores,
snapshot members, the card last). After every epoch :mod:`zoo.checkpoint` saves what ``resume=True``
continues from, so at most the epoch in flight is lost and no epoch is repeated in the history.
Epoch ``e`` shuffles its data by ``(seed, e)`` alone, so a resumed run sees the same batches as an
uninterrupted one. Callers change what the loop fits to (a teacher's targets, a loss) through
:class:`TrainHooks`, without ``zoo`` knowing why.

Transfer members declare phases in their registry ``recipe`` (e.g. head only, then the
last 30% of the backbone at a tenth of the learning rate); plain members have one phase.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from zoo import ownership
from zoo.artifacts import atomic_path, read_card, write_card, write_text
from zoo.checkpoint import TrainingState, load_best_weights, restore_rng
from zoo.errors import ZooError
from zoo.progress import keras_verbosity
from zoo.train_config import Phase, TrainConfig, resolve_phases, snapshot_dirs

log = logging.getLogger(__name__)


@dataclass
class TrainHooks:
    """What a caller changes in the one training loop without ``zoo`` knowing why (e.g. distillation).

    ``targets(images, labels) -> targets`` is traced into the tf.data pipeline *after*
    augmentation (train) and on the plain val batches, so whatever it computes (a teacher's
    probabilities) is computed on exactly the pixels the model is fed. ``loss`` / ``metrics``
    replace the cross-entropy and ``["accuracy"]`` (keep a metric named ``accuracy``: it is what
    early stopping monitors). ``identity`` joins the checkpoint's configuration, so ``resume``
    refuses a different teacher. ``card(run, model, dataset, metrics) -> dict`` adds fields to
    the run card, which is still written once, by :func:`_finish`.
    """

    targets: Any = None
    loss: Any = None
    metrics: list[Any] | None = None
    kind: str = "member"
    identity: dict[str, Any] = field(default_factory=dict)
    card: Any = None
    parents: list[str] = field(default_factory=list)


def with_targets(ds, targets, cache: bool = False):
    """``ds`` with its labels replaced by ``targets(images, labels)`` (sample weights kept).

    ``cache``: keep the first full pass in memory and replay it (``tf.data`` ``cache``). Only for
    a dataset that is the same every epoch (the plain val batches): a teacher's targets for them
    never change, so running the teacher on them again each epoch is wasted work (a vote teacher
    of three members on 1,710 val images costs seconds per epoch on 2 cores); the augmented train
    batches differ each epoch and are never cached (consistent teaching).
    """
    if targets is None:
        return ds

    def apply(x, y, *rest):
        return (x, targets(x, y), *rest)

    ds = ds.map(apply)  # sequential: a teacher model is not called from parallel threads
    return (ds.cache() if cache else ds).prefetch(2)


def apply_trainable(model, fraction: float | None) -> None:
    """Whole model trainable (None), or the head plus the last ``fraction`` of the ``backbone``."""
    if fraction is None:
        model.trainable = True
        return
    try:
        from zoo.models.finetune import set_trainable_fraction
    except ImportError:  # pragma: no cover - finetune ships with the ConvNeXt family
        raise ZooError("partial fine-tuning needs zoo.models.finetune") from None
    set_trainable_fraction(model, fraction)


# ----------------------------------------------------------------------------- keras pieces
def _strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        # All GPUs; on a CPU-only machine, every logical CPU device (tests split the CPU in two).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ZooError("strategy 'multiworker' needs TF_CONFIG (cluster and task) in the environment")
        from zoo.distribute import patch_keras_for_multiworker

        patch_keras_for_multiworker()  # Keras 3 fit() fails under this strategy otherwise (keras-team/keras#20585)
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(cfg: TrainConfig, lr_scale: float, steps: int):
    import keras

    peak = cfg.learning_rate * lr_scale
    if cfg.schedule == "cosine":
        warmup = int(round(cfg.warmup_epochs * steps / max(1, cfg.epochs)))
        warmup = min(warmup, max(0, steps - 1))
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak / 10 if warmup else peak,
            decay_steps=max(1, steps - warmup),
            alpha=0.01,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    else:
        lr = peak
    kw = dict(learning_rate=lr)
    if cfg.gradient_accumulation > 1:
        kw["gradient_accumulation_steps"] = cfg.gradient_accumulation
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **kw)
    if cfg.optimizer == "lion":
        return keras.optimizers.Lion(weight_decay=cfg.weight_decay or None, **kw)
    if cfg.optimizer == "nadam":
        return keras.optimizers.Nadam(**kw)
    return keras.optimizers.Adam(**kw)


def _callbacks(run: Path, state: TrainingState, cfg: TrainConfig, phase_epochs: int):
    import keras

    class Resumable(keras.callbacks.EarlyStopping):
        """Keras early stopping whose state survives in ``checkpoint/state.json``."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.wait, self.best = state.es_wait, state.es_best if state.es_best is not None else self.best
            self.best_epoch = state.es_best_epoch

        def on_epoch_end(self, epoch, logs=None):
            if state.diverged or not _finite_logs(logs):
                state.diverged = state.diverged or f"epoch {len(state.history) + 1}: {_bad_logs(logs)}"
                self.model.stop_training = True
                return  # never checkpoint non-finite weights: the last good epoch stays the resume point
            before = self.best
            super().on_epoch_end(epoch, logs)
            improved = self.best is not None and self.best != before
            state.epoch_done(self.model, epoch, logs or {}, improved, self.wait, self.best, self.best_epoch)

    class StopOnNonFinite(keras.callbacks.Callback):
        """Stop at the first batch whose loss is NaN/inf (Keras' TerminateOnNaN, but remembering why)."""

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(np.asarray(loss))):
                state.diverged = f"epoch {len(state.history) + 1}, batch {batch + 1}: loss {float(np.asarray(loss))}"
                self.model.stop_training = True

    # Explicit mode: "auto" cannot tell for metrics given as functions (a TrainHooks metric named "accuracy").
    mode = "max" if "acc" in cfg.monitor else "min" if "loss" in cfg.monitor else "auto"
    cbs = [
        StopOnNonFinite(),
        Resumable(
            monitor=cfg.monitor, patience=cfg.patience, mode=mode, restore_best_weights=False, start_from_epoch=0
        ),
    ]
    if cfg.tensorboard:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(run / "logs"), write_graph=False, profile_batch=0))
    return cbs


def _finite_logs(logs) -> bool:
    return all(
        np.isfinite(float(np.asarray(v))) for k, v in (logs or {}).items() if k != "learning_rate" and np.ndim(v) == 0
    )


def _bad_logs(logs) -> str:
    bad = {
        k: float(np.asarray(v))
        for k, v in (logs or {}).items()
        if np.ndim(v) == 0 and not np.isfinite(float(np.asarray(v)))
    }
    return ", ".join(f"{k} {v}" for k, v in bad.items()) or "non-finite metrics"


# ----------------------------------------------------------------------------- entry point
def _owns_out(fn):
    """Hold the ownership claim (and writer lock) on ``out`` for the whole training run."""
    import functools

    @functools.wraps(fn)
    def wrapper(member, data, out, *args, **kwargs):
        with ownership.claim(out, ("member", "student"), resumable=True, force_flag=None):
            return fn(member, data, out, *args, **kwargs)

    return wrapper


# Files a run folder that never reached its first checkpoint may hold (all the zoo's own).
_PRE_CHECKPOINT = ("logs", "checkpoint", ownership.MARKER)


def _restart(run: Path) -> None:
    import shutil

    left = sorted(p.name for p in run.iterdir() if p.name not in _PRE_CHECKPOINT)
    if left:
        raise ZooError(f"{run}: an interrupted run without a checkpoint that also holds {left}; choose another --out")
    for name in _PRE_CHECKPOINT[:2]:
        shutil.rmtree(run / name, ignore_errors=True)


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic`` also pin TensorFlow's kernels."""
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


@_owns_out
def train(
    member: str,
    data,
    out: str | os.PathLike,
    *,
    image_size: int | None = None,
    params: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    weights: str | None = None,
    resume: bool = False,
    evaluate_splits: tuple[str, ...] = ("val", "test"),
    hooks: TrainHooks | None = None,
    **overrides: Any,
) -> Path:
    """Train ``member`` on ``data`` (a source string or a loaded Dataset) into run folder ``out``.

    ``overrides`` set :class:`TrainConfig` fields (``epochs=3, batch_size=32, …``). Returns the
    completed run folder (with ``card.json``).

    Steps (in this order, which reproducibility depends on): check the options and the folder,
    load the data, seed and set up (phases, resumable state, augmentation), fit each phase,
    then finish: save the clean model, score each split, write the card last.
    """
    import keras

    from zoo.registry import get_spec

    cfg = _resolve_config(config, overrides)
    spec = get_spec(member)
    params = dict(params or {})
    if weights is not None:
        params["weights"] = weights
    size = int(image_size or spec.default_image_size)
    run = Path(out)
    state_file = _check_folder(run, resume)

    # Before any TensorFlow op: MultiWorkerMirroredStrategy must configure collective ops at program startup.
    strategy = _strategy(cfg.strategy)
    dataset = _load_data(data, size, cfg)

    set_determinism(cfg.seed, cfg.deterministic)
    if cfg.precision != "float32":
        keras.mixed_precision.set_global_policy(cfg.precision)
    pretrained = params.get("weights") not in (None, "none")
    phases = resolve_phases(cfg, spec.recipe, pretrained)
    hooks = hooks or TrainHooks()
    state = _open_state(run, member, params, size, dataset, cfg, hooks, resume and state_file.exists())
    job = _Job(run, spec, params, size, dataset, cfg, phases, state, strategy, hooks)
    model, stopped_early = _fit(job)
    return _finish(job, model, stopped_early, evaluate_splits)


@dataclass
class _Job:
    """What the steps of one :func:`train` call share."""

    run: Path
    spec: Any  # zoo.registry.ModelSpec
    params: dict[str, Any]
    size: int
    dataset: Any  # zoo.data.Dataset
    cfg: TrainConfig
    phases: list[Phase]
    state: TrainingState
    strategy: Any
    hooks: TrainHooks


def _resolve_config(config: TrainConfig | None, overrides: dict[str, Any]) -> TrainConfig:
    """``config`` (default: the recipe defaults) with ``overrides`` applied, validated."""
    cfg = config or TrainConfig()
    unknown = sorted(set(overrides) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ZooError(f"unknown training option(s) {unknown}")
    cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides})
    cfg.validate()
    return cfg


def _check_folder(run: Path, resume: bool) -> Path:
    """Check ``run`` may be trained into (see _owns_out); returns its checkpoint state file."""
    status = ownership.check_target(run, ("member", "student"), resumable=True, force_flag=None)
    state_file = run / "checkpoint" / "state.json"
    if status == "incomplete" and state_file.exists() and not resume:
        raise ZooError(f"{run}: holds an interrupted run; pass --resume to continue it (or choose another --out)")
    if status == "incomplete" and not state_file.exists():
        _restart(run)  # interrupted before its first checkpoint: nothing to resume
    return state_file


def _load_data(data, size: int, cfg: TrainConfig):
    """The dataset at ``size`` px (a loaded Dataset is used as is); training needs train and val splits."""
    from zoo.data import Dataset, load_dataset

    dataset = data if isinstance(data, Dataset) else load_dataset(str(data), size, seed=cfg.seed)
    if dataset.image_size != size:
        raise ZooError(f"data was loaded at {dataset.image_size}px but the member trains at {size}px")
    dataset.split("train")
    val_split = dataset.splits.get("val")
    if val_split is None or len(val_split) == 0:
        raise ZooError(f"{dataset.source}: training needs a 'val' split for early stopping")
    return dataset


def _open_state(
    run: Path,
    member: str,
    params: dict[str, Any],
    size: int,
    dataset,
    cfg: TrainConfig,
    hooks: TrainHooks,
    resume: bool,
) -> TrainingState:
    """The run's checkpointed state (loaded when resuming: the identity must match), folder and marker."""
    identity = {
        "member": member,
        "params": params,
        "image_size": size,
        "data": dataset.fingerprint,
        "train": cfg.to_dict(),
    }
    if hooks.identity:
        identity["hooks"] = hooks.identity
    identity = json.loads(json.dumps(identity, default=str))
    state = TrainingState.load(run, identity) if resume else TrainingState(run, identity)
    run.mkdir(parents=True, exist_ok=True)
    if not (run / ownership.MARKER).exists():
        ownership.write_marker(run, "member")
    return state


def _fit(job: _Job):
    """Build the model and fit every phase not yet done; returns (model with the best weights, stopped early)."""
    from zoo.augment import build_policy
    from zoo.data.batches import class_weights, make_dataset, steps_per_epoch

    data, cfg, state = job.dataset, job.cfg, job.state
    policy = build_policy(cfg.augment, num_classes=data.num_classes, seed=cfg.seed)
    # Every generator the policy draws from (its own, Keras layers', keras-cv's) is checkpointed with the epoch.
    state.augment_policy = policy
    train_split = data.split("train")
    steps = steps_per_epoch(train_split, cfg.batch_size, data.num_classes, cfg.balance)
    val_ds = make_dataset(
        data.splits["val"], data.num_classes, cfg.batch_size, training=False, deterministic=cfg.deterministic
    )
    val_ds = with_targets(val_ds, job.hooks.targets, cache=True)  # plain, the same batches every epoch
    class_w = class_weights(train_split.labels, data.num_classes) if cfg.class_weights else None

    def train_ds(index: int, phase: Phase):
        # Epoch e of this phase is ordered by (seed, first + e) alone: a resumed run sees the
        # same batches as one that never stopped.
        first = sum(p.epochs for p in job.phases[:index])
        ds = make_dataset(
            train_split,
            data.num_classes,
            cfg.batch_size,
            training=True,
            policy=policy,
            weights=class_w,
            balance=cfg.balance,
            seed=cfg.seed,
            epochs=(first + state.epoch, first + phase.epochs),
            deterministic=cfg.deterministic,
        )
        return with_targets(ds, job.hooks.targets)

    with job.strategy.scope():
        model = job.spec.build(data.num_classes, job.size, **job.params)
    stopped_early = False
    for index, phase in enumerate(job.phases):
        if index < state.phase:
            continue
        state.new_phase(index, phase.name)
        _start_phase(job, model, index, phase, steps)
        if state.epoch < phase.epochs and not (state.es_wait >= cfg.patience and state.epoch > 0):
            log.info(
                "phase '%s': epochs %d..%d, trainable params %d",
                phase.name,
                state.epoch + 1,
                phase.epochs,
                sum(int(np.prod(v.shape)) for v in model.trainable_weights),
            )
            model.fit(
                train_ds(index, phase),
                validation_data=val_ds,
                epochs=phase.epochs,
                initial_epoch=state.epoch,
                steps_per_epoch=steps,
                shuffle=False,  # each epoch is already ordered by zoo.data.batches.epoch_order (seed, epoch)
                callbacks=_callbacks(job.run, state, cfg, phase.epochs),
                verbose=keras_verbosity(),
            )
            _check_diverged(job)
        if state.best_file:
            load_best_weights(model, state.dir / state.best_file)
        stopped_early = stopped_early or state.epoch < phase.epochs
    return model, stopped_early


def _start_phase(job: _Job, model, index: int, phase: Phase, steps: int) -> None:
    """Compile ``model`` for ``phase`` and load the weights it starts from (its checkpoint, or the last phase's best)."""
    import keras

    state = job.state
    with job.strategy.scope():
        apply_trainable(model, phase.trainable_fraction)
        model.compile(
            optimizer=make_optimizer(job.cfg, phase.lr_scale, steps * phase.epochs),
            loss=job.hooks.loss or keras.losses.CategoricalCrossentropy(label_smoothing=job.cfg.label_smoothing),
            metrics=list(job.hooks.metrics or ["accuracy"]),
        )
    if state.weights_file:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(state.dir / state.weights_file)
        restore_rng(model, state.augment_policy, state.rng)
        log.info("resuming %s: phase '%s' after epoch %d", job.run, phase.name, state.epoch)
    elif index > 0 and state.best_file:
        load_best_weights(model, state.dir / state.best_file)


def _check_diverged(job: _Job) -> None:
    """Stop with one line when the NaN-loss callback saw a non-finite loss."""
    state = job.state
    if not state.diverged:
        return
    if state.history:
        then = (
            f"the folder keeps its last good epoch ({len(state.history)}) and can be resumed with --resume, "
            "or start a new --out with a lower --lr"
        )
    else:
        then = "nothing to resume; rerun with a lower --lr"
    raise ZooError(f"{job.run}: training diverged (non-finite loss at {state.diverged}); {then}")


def _finish(job: _Job, model, stopped_early: bool, evaluate_splits) -> Path:
    """Save the best model without optimizer state, score it, write plots, snapshots and the card (last)."""
    import shutil

    clean, metrics = _save_model(job, model, job.run, job.state.history, evaluate_splits)
    snapshots = _write_snapshots(job, model, evaluate_splits)
    card = _card(job, job.run, job.run.name, clean, metrics, job.phases, stopped_early)
    if snapshots:
        card["snapshots"] = snapshots
    shutil.rmtree(job.run / "checkpoint", ignore_errors=True)
    write_card(job.run, card)
    (job.run / ownership.MARKER).unlink(missing_ok=True)
    log.info(
        "run complete: %s (%s)", job.run, ", ".join(f"{s} accuracy {m['accuracy']:.4f}" for s, m in metrics.items())
    )
    return job.run


def _save_model(job: _Job, model, folder: Path, history: list[dict[str, Any]], evaluate_splits):
    """``model``'s weights as ``folder/model.keras`` (no optimizer state), its history and curves, each split scored."""
    from zoo import plots
    from zoo.evaluate import score_split

    clean = job.spec.build(
        job.dataset.num_classes, job.size, **{**job.params, **({"weights": None} if "weights" in job.params else {})}
    )
    clean.set_weights(model.get_weights())
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.keras") as tmp:
        clean.save(tmp)
    write_history(folder / "history.csv", history)
    plots.training_curves(folder / "plots" / "training_curves.png", history)
    metrics = {}
    for split in evaluate_splits:
        part = job.dataset.splits.get(split)
        if part is not None and len(part):
            title = f"{job.spec.name} · {split}" + (f" · {folder.name}" if folder != job.run else "")
            metrics[split], _ = score_split(folder, clean, split, part, job.dataset.class_names, title)
    return clean, metrics


def _write_snapshots(job: _Job, model, evaluate_splits) -> list[str]:
    """Each cycle but the last as a complete member folder ``snapshots/cycle<k>/`` (the last is the run itself).

    A snapshot is that cycle's best checkpoint, scored and carded like any member (its own name,
    ``snapshot`` saying whose cycle it is), so ``zoo ensemble`` takes it as one. Its folder is
    outside the run's own file hashes (``UNHASHED_DIRS``): each snapshot card guards its own.
    """
    written = []
    for k, folder in enumerate(snapshot_dirs(job.run, job.cfg.snapshots)):
        phase, phases = job.phases[k], job.phases[: k + 1]
        load_best_weights(model, job.state.dir / TrainingState.best_name(k))
        clean, metrics = _save_model(job, model, folder, _history_of(job.state, phases), evaluate_splits)
        stopped_early = sum(r["phase"] == phase.name for r in job.state.history) < phase.epochs
        card = _card(job, folder, f"{job.run.name}_{phase.name}", clean, metrics, phases, stopped_early)
        card["snapshot"] = {"of": job.run.name, "cycle": k + 1, "cycles": len(job.phases)}
        write_card(folder, card)
        written.append(folder.relative_to(job.run).as_posix())
        log.info("snapshot %s: %s", folder, ", ".join(f"{s} accuracy {m['accuracy']:.4f}" for s, m in metrics.items()))
    return written


def _history_of(state: TrainingState, phases: list[Phase]) -> list[dict[str, Any]]:
    """The epochs of ``phases`` (all of a run's, or a snapshot's cycles up to its own)."""
    names = {p.name for p in phases}
    return [r for r in state.history if r["phase"] in names]


def _card(
    job: _Job, folder: Path, name: str, model, metrics: dict[str, Any], phases: list[Phase], stopped_early: bool
) -> dict[str, Any]:
    """The card of ``folder``, trained through ``phases``: what was trained, on what, how, and its scores (plus
    what ``hooks.card`` adds)."""
    from zoo.augment.spec import covered_families

    cfg, state = job.cfg, job.state
    history = _history_of(state, phases)
    monitor = cfg.monitor
    best = max(
        history,
        key=lambda r: r.get(monitor, float("-inf")) if "acc" in monitor else -r.get(monitor, float("inf")),
    )
    card = {
        "kind": job.hooks.kind,
        "name": name,
        "member": job.spec.name,
        "family": job.spec.family,
        "params": job.params,
        "parameter_count": int(model.count_params()),  # "params" above: the builder's hyper-parameters
        "classes": list(job.dataset.class_names),
        "input": {
            "image_size": job.size,
            "channels": 3,
            "dtype": "float32",
            "range": [0, 255],
            "color": "RGB",
            "resize": "bilinear",
            "preprocessing": "inside model",
        },
        "model_file": "model.keras",
        "data": {**job.dataset.summary(), "seed": cfg.seed},
        "training": {
            "config": cfg.to_dict(),
            "phases": [vars(p) for p in phases],
            "epochs_run": len(history),
            "best_epoch": best["epoch"],
            "stopped_early": stopped_early,
            "seconds": round(sum(r["seconds"] for r in history), 1),
            "strategy": type(job.strategy).__name__,
            "replicas": int(job.strategy.num_replicas_in_sync),
            "augment": state.augment_policy.to_dict() if state.augment_policy is not None else cfg.augment,
        },
        "metrics": metrics,
        "parents": list(job.hooks.parents),
        # shift-suite families the augmentation covers: results on the others are out-of-family
        "augment_families": covered_families(cfg.augment),
    }
    if job.hooks.card is not None:
        card.update(job.hooks.card(folder, model, job.dataset, metrics))
    return card


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """history.csv: one row per epoch, columns in first-seen order (phases may add metrics)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def describe(run: str | os.PathLike) -> dict[str, Any]:
    return read_card(run)
