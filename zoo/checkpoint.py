"""What survives an interruption of :mod:`zoo.train`: the ``checkpoint/`` folder between epochs.

After every epoch the weights *and optimizer state* go to ``checkpoint/p<phase>-epoch<N>.weights.h5``
(and the phase's best epoch to ``p<phase>-best.weights.h5``), then ``checkpoint/state.json`` (phase,
epoch, history, early-stopping state, random-generator states) is replaced atomically. The
random-generator states are what ``save_weights`` leaves out: dropout's seed generators and the
augmentation policy's, so a resumed epoch continues their draws instead of replaying the first epochs'.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from zoo.artifacts import atomic_path, write_json
from zoo.errors import ZooError

log = logging.getLogger(__name__)


class TrainingState:
    """What ``checkpoint/`` holds between epochs, and how it is written safely."""

    def __init__(self, run: Path, config: dict[str, Any]):
        self.dir = run / "checkpoint"
        self.path = self.dir / "state.json"
        self.config = config
        self.phase = 0
        self.epoch = 0  # epochs completed in this phase
        self.history: list[dict[str, Any]] = []
        self.es_wait, self.es_best, self.es_best_epoch = 0, None, 0
        self.best_file: str | None = None
        self.weights_file: str | None = None
        self.rng: dict[str, Any] = {}  # random-generator states at the end of the last epoch
        self.augment_policy = None  # the augmentation policy, whose generators are checkpointed too
        self.phase_name = "train"
        self.diverged: str | None = None  # set when the loss became NaN/inf: where it happened
        self._t0 = time.time()

    @classmethod
    def load(cls, run: Path, config: dict[str, Any]) -> TrainingState:
        st = cls(run, config)
        data = json.loads(st.path.read_text())
        if data["config"] != json.loads(json.dumps(config)):
            raise ZooError(f"{run}: cannot resume, the training configuration changed since the checkpoint")
        for k in ("phase", "epoch", "history", "es_wait", "es_best", "es_best_epoch", "best_file", "weights_file"):
            setattr(st, k, data[k])
        st.rng = data.get("rng") or {}
        return st

    def new_phase(self, index: int, name: str) -> None:
        if index != self.phase:
            self.phase, self.epoch = index, 0
            self.es_wait, self.es_best, self.es_best_epoch = 0, None, 0
            self.weights_file = None
        self.phase_name = name

    def epoch_done(self, model, epoch: int, logs: dict, improved: bool, wait: int, best, best_epoch: int) -> None:
        lr = model.optimizer.learning_rate
        row = {
            "epoch": len(self.history) + 1,
            "phase": self.phase_name,
            "phase_epoch": epoch + 1,
            "learning_rate": float(np.asarray(lr)),
        }
        row.update({k: float(v) for k, v in logs.items() if k != "learning_rate"})
        row["seconds"] = round(time.time() - self._t0, 2)
        self._t0 = time.time()
        self.history.append(row)
        self.dir.mkdir(parents=True, exist_ok=True)
        weights = f"p{self.phase}-epoch{epoch + 1}.weights.h5"
        with atomic_path(self.dir / weights) as tmp:
            model.save_weights(tmp)  # model and optimizer variables
        if improved or self.best_file is None:
            best_name = self.best_name(self.phase)
            with atomic_path(self.dir / best_name) as tmp:
                model.save_weights(tmp)
            self.best_file = best_name
        previous = self.weights_file
        self.epoch, self.weights_file = epoch + 1, weights
        self.es_wait, self.es_best, self.es_best_epoch = (
            int(wait),
            (None if best is None else float(best)),
            int(best_epoch),
        )
        self.rng = capture_rng(model, self.augment_policy)
        self.save()
        if previous and previous != weights:
            (self.dir / previous).unlink(missing_ok=True)

    @staticmethod
    def best_name(phase: int) -> str:
        """The checkpoint file of phase ``phase``'s best epoch (kept until the run completes)."""
        return f"p{phase}-best.weights.h5"

    def save(self) -> None:
        keys = ("phase", "epoch", "history", "es_wait", "es_best", "es_best_epoch", "best_file", "weights_file", "rng")
        write_json(self.path, {"config": self.config, **{k: getattr(self, k) for k in keys}})


def _seed_variables(model) -> list:
    """The model's random-generator states (dropout and other random layers), in model order.

    Keras keeps them as variables but ``save_weights`` does not store them.
    """
    return [v for v in model.variables if "seed_generator_state" in v.path]


def capture_rng(model, policy=None) -> dict[str, Any]:
    """JSON-ready states of the generators a resumed epoch must continue (not replay)."""
    import keras

    out: dict[str, Any] = {"model": [keras.ops.convert_to_numpy(v).tolist() for v in _seed_variables(model)]}
    if policy is not None:
        out["augment"] = policy.random_state()
    return out


def restore_rng(model, policy, saved: dict[str, Any]) -> None:
    states = saved.get("model") or []
    variables = _seed_variables(model)
    if len(states) == len(variables):
        for v, value in zip(variables, states):
            v.assign(np.asarray(value, dtype=v.dtype))
    elif states:
        log.warning(
            "resume: the model has %d random-generator states, the checkpoint %d; not restored",
            len(variables),
            len(states),
        )
    if policy is not None and saved.get("augment") is not None:
        policy.set_random_state(saved["augment"])


def load_best_weights(model, path: Path) -> None:
    """The model weights of a best-epoch checkpoint, whatever optimizer ``model`` is compiled with now.

    The checkpoint also holds the optimizer of the phase that wrote it; a later phase (a fine-tuning
    phase, a snapshot cycle) starts with a fresh optimizer, so Keras skips those variables
    (``skip_mismatch``) and warns about it on every phase. Skipping them is the intent: no warning.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer", category=UserWarning)
        model.load_weights(path, skip_mismatch=True)
