"""A parsed spec turned into one callable on batches, built once outside the input pipeline.

All random state (a ``tf.random.Generator`` for the ops in :mod:`zoo.augment.ops`, Keras
``SeedGenerator``s inside the layers) is created here, eagerly, so that calling the policy
inside ``tf.data.Dataset.map`` only traces ops and never creates variables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from zoo.augment import ops as tfops
from zoo.augment.spec import OpSpec, canonical
from zoo.errors import ZooError

log = logging.getLogger(__name__)


def _make(op: OpSpec, rng: tf.random.Generator, seed: int) -> tuple[tfops.BatchFn, tuple]:
    """One op -> (batch function with its probability, Keras layers it owns)."""
    p = op.params.get("p", 1.0)
    k = dict(op.params)
    if op.name == "flip_rot90":
        return tfops.flip_rot90(rng), ()
    if op.name == "cutout":  # RandomErasing has its own per-image probability
        from zoo.augment import keras_ops

        fn = keras_ops.cutout(seed, k["scale"], p)
        return fn, fn.layers
    if op.name in ("stain", "color", "augmix", "blur", "noise", "jpeg", "center_mask"):
        fn = {
            "stain": lambda: tfops.stain(rng, k["sigma"]),
            "color": lambda: tfops.color_jitter(rng, k["strength"]),
            "augmix": lambda: tfops.augmix(rng, k["strength"], int(k["width"]), int(k["depth"])),
            "blur": lambda: tfops.blur(rng, k["sigma"]),
            "noise": lambda: tfops.noise(rng, k["std"]),
            "jpeg": lambda: tfops.jpeg(rng, int(k["quality"])),
            "center_mask": lambda: tfops.center_mask(rng, k["radius"]),
        }[op.name]()
    elif op.name == "gridmask":
        from zoo.augment import kerascv_ops

        fn = kerascv_ops.gridmask(rng, seed, k["ratio"])
    else:
        from zoo.augment import keras_ops

        fn = {
            "randaugment": lambda: keras_ops.randaugment(rng, seed, int(k["num_ops"]), k["factor"]),
            "cutmix": lambda: keras_ops.cutmix(seed, k["factor"]),
            "mixup": lambda: keras_ops.mixup(seed, k["alpha"]),
        }[op.name]()
    return tfops.with_probability(fn, p, rng), getattr(fn, "layers", ())


class Policy:
    """Callable ``(images (B,H,W,3) 0..255, labels (B,C)) -> (images float32 0..255, labels float32)``.

    Integer labels ``(B,)`` are one-hot encoded with ``num_classes``. Output images keep the
    input's static shape (so Keras sees fixed sizes) and are clipped to 0..255.
    """

    def __init__(self, ops: list[OpSpec], *, num_classes: int, seed: int = 0):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ZooError(f"augmentation needs num_classes >= 1, got {num_classes!r}")
        self.ops = list(ops)
        self.names = [op.name for op in self.ops]
        self.num_classes = num_classes
        self.seed = int(seed)
        self.spec = canonical(self.ops)
        self._rng = tf.random.Generator.from_seed(self.seed)
        # distinct, stable seeds per op so adding an op does not reshuffle the others
        built = [_make(op, self._rng, self.seed * 1009 + 7919 * (i + 1)) for i, op in enumerate(self.ops)]
        self._fns: list[Callable] = [fn for fn, _ in built]
        self._layers = [layer for _, layers in built for layer in layers]

    @property
    def mixes_labels(self) -> bool:
        """True when labels can come out soft (CutMix/MixUp present)."""
        return any(op.info.mixes_labels for op in self.ops)

    # No Python control flow depends on tensors here (ops use tf.cond/switch_case themselves), so
    # AutoGraph has nothing to convert; skipping it avoids its warnings about the op lambdas.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, images, labels):
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or (images.shape[-1] is not None and images.shape[-1] != 3):
            raise ZooError(f"augmentation works on batches (B, H, W, 3); got shape {images.shape}")
        images = tf.cast(images, tf.float32)
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 1:
            labels = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        labels = tf.cast(labels, tf.float32)
        static = images.shape
        for fn in self._fns:
            images, labels = fn(images, labels)
        images = tf.ensure_shape(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0), static)
        return images, labels

    # ------------------------------------------------------------------ random state (resume)
    def _generators(self) -> tuple[list, list]:
        """Every tf.random.Generator and Keras seed-generator state variable the policy draws from."""
        tf_gens, keras_states = [self._rng], []
        for layer in self._layers:
            for sub in layer._flatten_layers(include_self=True, recursive=True):
                gen = getattr(sub, "_random_generator", None)  # keras-cv layers
                if isinstance(gen, tf.random.Generator) and all(gen is not g for g in tf_gens):
                    tf_gens.append(gen)
            keras_states.extend(v for v in layer.variables if "seed_generator_state" in v.path)
        return tf_gens, keras_states

    def random_state(self) -> dict[str, list]:
        """JSON-ready snapshot of all random state, for exact resume (see :meth:`set_random_state`)."""
        tf_gens, keras_states = self._generators()
        return {
            "tf": [g.state.numpy().tolist() for g in tf_gens],
            "keras": [tf.convert_to_tensor(v).numpy().tolist() for v in keras_states],
        }

    def set_random_state(self, state: dict[str, list]) -> None:
        """Restore a :meth:`random_state` snapshot taken from a policy built with the same spec."""
        tf_gens, keras_states = self._generators()
        if len(state.get("tf", [])) != len(tf_gens) or len(state.get("keras", [])) != len(keras_states):
            raise ZooError("augmentation random state does not match this policy (was it saved from another spec?)")
        for gen, value in zip(tf_gens, state["tf"]):
            gen.reset(tf.constant(value, dtype=gen.state.dtype))
        for var, value in zip(keras_states, state["keras"]):
            var.assign(tf.constant(value, dtype=var.dtype))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for cards; ``build_policy(policy.to_dict(), ...)`` rebuilds it."""
        return {
            "spec": self.spec,
            "seed": self.seed,
            "policies": list(self.names),
            "ops": [op.to_dict() for op in self.ops],
            "mixes_labels": self.mixes_labels,
        }

    def __repr__(self) -> str:
        return f"Policy({self.spec!r}, seed={self.seed})"
