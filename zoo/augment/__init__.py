"""Augmentation policies applied in the tf.data input pipeline (never inside exported models).

Contract used by :mod:`zoo.data.batches`: ``build_policy(spec, num_classes=…, seed=…)``
returns a callable ``policy(images, labels) -> (images, labels)`` on *batches*: images
float32 ``(B, H, W, 3)`` in 0..255, labels float32 ``(B, C)`` one-hot or soft; label-mixing
policies return soft labels that still sum to 1.

Specs are strings like ``"flip_rot90,stain:0.3,randaugment:2:0.5,mixup:0.2"`` or presets
(``none``, ``seed``, ``shift``); see :mod:`zoo.augment.spec` and :func:`describe`.
``shifted_copy`` (in :mod:`zoo.augment.shift`) makes a deterministic "other lab" copy of a
validation set. This module stays importable without TensorFlow; the heavy parts load on use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo.augment.spec import OPS, PRESETS, available_policies, canonical, describe, parse

if TYPE_CHECKING:
    from zoo.augment.policy import Policy

__all__ = [
    "build_policy",
    "Policy",
    "available_policies",
    "describe",
    "parse",
    "canonical",
    "OPS",
    "PRESETS",
    "shifted_copy",
]


def build_policy(spec: str | Sequence[str] | Mapping[str, Any] | None, *, num_classes: int, seed: int = 0) -> Policy:
    """Parse and validate ``spec`` (raises ZooError listing what exists) and build the policy."""
    from zoo.augment.policy import Policy

    return Policy(parse(spec), num_classes=num_classes, seed=seed)


def __getattr__(name: str):
    if name == "Policy":
        from zoo.augment.policy import Policy

        return Policy
    if name == "shifted_copy":
        from zoo.augment.shift import shifted_copy

        return shifted_copy
    raise AttributeError(f"module 'zoo.augment' has no attribute {name!r}")
