"""Make Keras 3 ``Model.fit`` work under ``tf.distribute.MultiWorkerMirroredStrategy``.

Keras 3.15's TensorFlow trainer breaks under the multi-worker strategy in two places
(keras-team/keras#20585, tensorflow/tensorflow#72388, both open; the TF multi-worker tutorial
fails the same way):

1. ``TensorFlowTrainer._maybe_symbolic_build`` calls ``strategy.reduce("MEAN", batch)`` on the
   whole ``(x, y, sample_weight)`` tuple; the collective implementation reduces one value at
   a time and fails with "Attempt to convert a value (PerReplica…) … to a Tensor".
2. ``reduce_per_replica`` reduces every step output with ``strategy.reduce("MEAN", v, axis=0)``
   for multi-worker strategies, which fails for the scalar loss and metrics
   ("Invalid reduction dimension 0 for input with 0 dimensions").

:func:`patch_keras_for_multiworker` wraps both so the sample batch is reduced element by
element and scalars are averaged across workers with ``axis=None``. Everything else goes to
the original Keras code; the wrappers act only when a multi-worker collective strategy is in
use, and only once per process. Remove this module when Keras fixes the issue (the slow test
tests/zoo/test_distribute.py trains two local workers through it).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_PATCHED = False


def patch_keras_for_multiworker() -> None:
    global _PATCHED
    if _PATCHED:
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tft

    multi_worker = tft._collective_all_reduce_multi_worker
    original_reduce = tft.reduce_per_replica
    original_build = tft.TensorFlowTrainer._maybe_symbolic_build

    def _local(v, strategy):
        return strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v

    def reduce_per_replica(values, strategy, reduction):
        if not (multi_worker(strategy) and reduction in ("auto", "mean")):
            return original_reduce(values, strategy, reduction)

        def one(v):
            t = _local(v, strategy)
            if getattr(getattr(t, "shape", None), "rank", None) == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return original_reduce(v, strategy, reduction)

        return tree.map_structure(one, values)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return original_build(self, iterator, data_batch)
        for _, _, it in iterator:
            batch = next(it)
            break
        else:
            return original_build(self, None, data_batch)
        batch = tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None) if isinstance(v, tf.distribute.DistributedValues) else v,
            batch,
        )
        with strategy.scope():
            self._symbolic_build(data_batch=batch)

    tft.reduce_per_replica = reduce_per_replica
    tft.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    _PATCHED = True
    log.debug("Keras trainer patched for MultiWorkerMirroredStrategy (keras-team/keras#20585)")
