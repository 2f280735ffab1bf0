"""Test-time BatchNorm adaptation: re-estimate BN statistics on unlabelled target images.

Why: a BatchNorm layer normalises with the mean/variance of the *training* activations. When
another lab's images shift those activations (colour, brightness), every BN layer is off by the
same systematic amount and errors compound through the network. Re-estimating the statistics on
the target images (no labels needed) removes that covariate shift layer by layer; this is
"prediction-time BN" (Nado et al. 2020) / covariate-shift adaptation of Schneider et al. (2020),
including their prior: ``prior`` weights the source statistics like that many target images.

When it helps: the target set is one lab (a systematic shift) and has at least a few hundred
images; the classes are not wildly re-balanced (the statistics mix classes). It cannot help a
model without BN (ConvNeXt uses LayerNorm) and costs little for a model whose input is already
normalised per image (``input_norm``). It is per-set, not per-image: adapt once per lab/batch of
slides, then predict.
"""

from __future__ import annotations

import logging

import numpy as np

from zoo.errors import ZooError

log = logging.getLogger(__name__)


def batchnorm_layers(model) -> list:
    """Every ``keras.layers.BatchNormalization`` inside ``model`` (nested models included)."""
    import keras

    return [
        lyr
        for lyr in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(lyr, keras.layers.BatchNormalization)
    ]


def adapt_batchnorm(model, images: np.ndarray, *, batch_size: int = 128, prior: float = 0.0, seed: int = 0):
    """Replace BN moving statistics of ``model`` (in place) by their estimate on ``images``.

    Each BN layer's statistics are the size-weighted average over batches of the batch statistics
    (computed with the earlier layers already adapted, in training mode); with ``prior`` N > 0 the
    result is ``(N·source + n·target) / (N + n)``. The collecting pass runs in training mode, so
    dropout before a BN layer would add noise to its statistics (zoo members put dropout after
    the last BN). Returns ``model``. Raises ZooError when the model has no BN layer.
    """
    bns = batchnorm_layers(model)
    if not bns:
        raise ZooError(f"model '{model.name}' has no BatchNormalization layer; BN adaptation does not apply")
    images = np.asarray(images)
    n = len(images)
    if n < 2:
        raise ZooError(f"BN adaptation needs at least 2 target images, got {n}")
    source = [(bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()) for bn in bns]
    momenta = [bn.momentum for bn in bns]
    order = np.random.default_rng(seed).permutation(n)
    # drop a last batch of 1 (its variance is 0)
    starts = [s for s in range(0, n, batch_size) if n - s >= 2]
    seen = 0
    try:
        for start in starts:
            batch = images[order[start : start + batch_size]].astype(np.float32)
            # size-weighted running average: moving = moving·m + batch·(1 − m), m = seen/(seen + b)
            for bn in bns:
                bn.momentum = seen / (seen + len(batch))
            model(batch, training=True)
            seen += len(batch)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
    if prior > 0:
        w = float(prior) / (prior + n)
        for bn, (mean, var) in zip(bns, source):
            bn.moving_mean.assign(w * mean + (1 - w) * bn.moving_mean.numpy())
            bn.moving_variance.assign(w * var + (1 - w) * bn.moving_variance.numpy())
    log.info("adapted %d BatchNorm layers on %d images (prior %g)", len(bns), n, prior)
    return model
