"""tf.data input pipelines: cached, shuffled, batched, augmented, prefetched.

Labels travel one-hot (float) so label-mixing augmentations can make them soft; class
weights for imbalance travel as per-sample weights (``Σ_c y_c · w_c``), which stays correct
for soft labels. ``balance`` oversamples each class to a target count per epoch on the fly
(the seed trained on 42,000 augmented images from 13,759) without writing copies.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.data.dataset import Split
from zoo.errors import ZooError


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """sklearn's "balanced" weights: n / (C · count_c), 0 for absent classes."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.zeros(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def make_dataset(
    split: Split,
    num_classes: int,
    batch_size: int,
    *,
    training: bool,
    policy=None,
    weights: np.ndarray | None = None,
    balance: int | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(images float32 0..255, one-hot labels[, sample weights])``."""
    if len(split) == 0:
        raise ZooError("cannot build a pipeline from an empty split")
    onehot = np.eye(num_classes, dtype=np.float32)[split.labels]
    if training and balance:
        ds = _balanced(split.images, onehot, split.labels, num_classes, balance, seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices((split.images, onehot)).cache()
        if training:
            ds = ds.shuffle(min(len(split), 20_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training and policy is not None:
        ds = ds.map(policy, num_parallel_calls=tf.data.AUTOTUNE)
    if weights is not None:
        w = tf.constant(weights, tf.float32)
        ds = ds.map(lambda x, y: (x, y, tf.reduce_sum(y * w, axis=-1)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _balanced(images, onehot, labels, num_classes, target, seed) -> tf.data.Dataset:
    """``target`` samples per class per epoch, drawn uniformly over classes present."""
    per_class = []
    present = [c for c in range(num_classes) if (labels == c).any()]
    for c in present:
        idx = np.flatnonzero(labels == c)
        per_class.append(
            tf.data.Dataset.from_tensor_slices((images[idx], onehot[idx])).cache().shuffle(len(idx), seed=seed + c).repeat()
        )
    mixed = tf.data.Dataset.sample_from_datasets(per_class, seed=seed, stop_on_empty_dataset=False)
    return mixed.take(target * len(present))


def steps_per_epoch(split: Split, batch_size: int, num_classes: int, balance: int | None) -> int:
    n = balance * len(np.unique(split.labels)) if balance else len(split)
    return int(np.ceil(n / batch_size))
