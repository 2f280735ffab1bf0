"""Where a model looked: Grad-CAM for Keras models, occlusion maps for anything that only predicts.

Hematologists trust a classifier more when they see that it looked at the cell (nucleus lobes,
granules) rather than the background or a stain deposit. Two explainers share one output, a heat
map in [0, 1] of the input's size per image:

- :class:`GradCam` (Selvaraju et al. 2017) for a Keras member or student. The feature map is
  found generically: the last layer whose output is ``(batch, H, W, C)`` with H, W > 1, looked
  for inside nested models too (ConvNeXt keeps its stages in one ``backbone`` model). The class
  score is the final softmax layer's logit when there is one (gradients of a saturated
  probability vanish), else the log-probability.
- :func:`occlusion` for a model we can only run (an ONNX export): a grey patch slides over the
  image and the heat is how much the predicted class' probability drops where it covers.

Ensembles (weighted members) and ONNX files are wired up in the application layer
(``zoo/commands/explain.py``): this module knows neither.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from zoo.errors import ZooError

log = logging.getLogger(__name__)


class Explainer(Protocol):
    """What ``zoo explain`` and the report's mistake gallery need from any artifact."""

    name: str
    method: str  # "Grad-CAM", "occlusion", …
    classes: list[str]
    image_size: int

    def explain(self, images: np.ndarray, target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (N, C), heat maps (N, S, S) in [0, 1])`` for uint8 images ``(N, S, S, 3)``.

        ``target`` names the class to explain per image (default: the predicted one).
        """
        ...


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] on its own (a flat map stays 0)."""
    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0.0)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 1e-12, (maps - lo) / np.maximum(span, 1e-12), 0.0).astype(np.float32)


def resize_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` maps to ``(N, size, size)``."""
    from PIL import Image

    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == (size, size):
        return maps
    return np.stack([np.asarray(Image.fromarray(m).resize((size, size), Image.BILINEAR)) for m in maps]).astype(
        np.float32
    )


# ----------------------------------------------------------------------------- Grad-CAM
def _is_feature_map(layer) -> bool:
    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError):  # layers without one symbolic output (shared, input-less)
        return False
    return len(shape) == 4 and all(isinstance(d, int) and d > 1 for d in shape[1:3])


def _has_feature_map(layer) -> bool:
    return _is_feature_map(layer) or any(_has_feature_map(inner) for inner in getattr(layer, "layers", None) or [])


def find_feature_layer(model) -> tuple[Any, Any]:
    """``(child, layer)``: the last 4-D feature map and the top-level layer of ``model`` that holds it.

    ``child is layer`` when the map is a top-level layer; otherwise ``child`` is a nested model
    (ConvNeXt's backbone, or a member behind an ensemble's resize), searched the same way.
    """
    for top in reversed(model.layers):
        if getattr(top, "layers", None) and _has_feature_map(top):
            return top, find_feature_layer(top)[1]
        if _is_feature_map(top):
            return top, top
    raise ZooError(f"model '{model.name}' has no convolutional feature map (no layer with a (batch, H, W, C) output)")


class _Trace:
    """One functional model run in three pieces: layers before the feature map's holder, the holder
    (returning the feature map and its own output), the layers after it. Nested holders recurse."""

    def __init__(self, model):
        import keras

        child, layer = find_feature_layer(model)
        top = list(model.layers)
        k = top.index(child)
        self.layer = layer
        self.after = top[k + 1 :]
        if child is layer:  # a top-level map: one sub-model covers everything up to it
            self.before, self.inner, self.features = [], None, keras.Model(model.inputs, layer.output)
        else:
            self.before = [lay for lay in top[:k] if not isinstance(lay, keras.layers.InputLayer)]
            self.inner, self.features = _Trace(child), None

    def forward(self, x):
        """``(feature map, class scores, probabilities)``; scores are logits when the head allows."""
        import keras

        y = x
        for lay in self.before:
            y = lay(y, training=False)
        if self.inner is not None:
            feats, scores, y = self.inner.forward(y)
            if not self.after:
                return feats, scores, y
        else:
            feats = y = self.features(y, training=False)
        for i, lay in enumerate(self.after):
            if (
                i == len(self.after) - 1
                and isinstance(lay, keras.layers.Dense)
                and lay.activation is keras.activations.softmax
            ):
                logits = keras.ops.matmul(keras.ops.cast(y, lay.kernel.dtype), lay.kernel)  # mixed precision: cast
                if lay.use_bias:
                    logits = logits + lay.bias
                return feats, logits, keras.ops.softmax(logits)
            y = lay(y, training=False)
        return feats, keras.ops.log(keras.ops.clip(y, 1e-12, 1.0)), y


class GradCam:
    """Grad-CAM heat maps of a functional Keras classifier (softmax output)."""

    method = "Grad-CAM"

    def __init__(self, model, name: str = "", classes: Sequence[str] | None = None):
        self.model = model
        self.name = name or model.name
        self.image_size = int(model.inputs[0].shape[1])
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(int(model.outputs[0].shape[-1]))]
        )
        self._trace = _Trace(model)
        self.feature_layer = self._trace.layer.name
        self._nested = self._trace.inner is not None

    def explain(
        self, images: np.ndarray, target: np.ndarray | None = None, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        images = np.asarray(images)
        probs, maps = [], []
        for i in range(0, len(images), batch_size):
            x = tf.convert_to_tensor(images[i : i + batch_size], dtype=tf.float32)
            with tf.GradientTape() as tape:
                feats, scores, p = self._trace.forward(x)
                cls = np.argmax(p.numpy(), axis=1) if target is None else np.asarray(target[i : i + batch_size])
                chosen = tf.gather(scores, cls, axis=1, batch_dims=1)
            grads = tape.gradient(chosen, feats)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(tf.cast(weights * feats, tf.float32), axis=-1)).numpy()
            probs.append(np.asarray(p, dtype=np.float32))
            maps.append(_normalise(cam))
        if not probs:
            return np.zeros((0, len(self.classes)), np.float32), np.zeros(
                (0, self.image_size, self.image_size), np.float32
            )
        reference = np.asarray(self.model.predict(images[:2].astype(np.float32), verbose=0))
        if not np.allclose(reference, probs[0][:2], atol=1e-3):
            raise ZooError(
                f"model '{self.name}': Grad-CAM could not trace it from input to output as one chain of layers"
            )
        return np.concatenate(probs), _normalise(resize_maps(np.concatenate(maps), self.image_size))


# ----------------------------------------------------------------------------- occlusion
def occlusion(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    target: np.ndarray | None = None,
    patch: int | None = None,
    stride: int | None = None,
    fill: float = 128.0,
    batch_size: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and occlusion heat maps of a black-box ``predict(uint8-like images) -> probs``.

    The heat of a pixel is the mean drop of the explained class' probability over the patches
    that cover it (Zeiler & Fergus 2014). Patch: an eighth of the image; stride: half a patch.
    """
    images = np.asarray(images)
    n, size = len(images), images.shape[1]
    patch = patch or max(2, size // 8)
    stride = stride or max(1, patch // 2)
    probs = np.asarray(predict(images), dtype=np.float32)
    cls = probs.argmax(axis=1) if target is None else np.asarray(target)
    starts = list(range(0, max(1, size - patch) + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    boxes = [(y, x) for y in starts for x in starts]
    heat = np.zeros((n, size, size), np.float32)
    cover = np.zeros((size, size), np.float32)
    for y, x in boxes:
        cover[y : y + patch, x : x + patch] += 1
    for i in range(n):
        base = probs[i, cls[i]]
        batch = np.repeat(images[i : i + 1].astype(np.float32), len(boxes), axis=0)
        for j, (y, x) in enumerate(boxes):
            batch[j, y : y + patch, x : x + patch] = fill
        out = np.concatenate([np.asarray(predict(batch[k : k + batch_size])) for k in range(0, len(batch), batch_size)])
        drop = base - out[:, cls[i]]
        for j, (y, x) in enumerate(boxes):
            heat[i, y : y + patch, x : x + patch] += drop[j]
    return probs, _normalise(heat / np.maximum(cover, 1))


@dataclass
class Occlusion:
    """An :class:`Explainer` over any ``predict`` function (ONNX Runtime sessions, in practice)."""

    name: str
    classes: list[str]
    image_size: int
    predict: Callable[[np.ndarray], np.ndarray]
    method: str = "occlusion"

    def explain(self, images: np.ndarray, target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return occlusion(self.predict, images, target)


@dataclass
class Weighted:
    """The weighted average of several explainers' heat maps (an ensemble's members), for the ensemble's class.

    ``combine`` maps the members' stacked probabilities ``(M, N, C)`` to the ensemble's ``(N, C)``.
    """

    name: str
    classes: list[str]
    image_size: int
    members: list[Any]
    weights: list[float]
    combine: Callable[[np.ndarray], np.ndarray]
    method: str = "Grad-CAM, weighted over members"

    def explain(self, images: np.ndarray, target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        member_probs = np.stack([_probs_only(m, images) for m in self.members])
        probs = np.asarray(self.combine(member_probs), dtype=np.float32)
        cls = probs.argmax(axis=1) if target is None else np.asarray(target)
        heat = np.zeros((len(images), self.image_size, self.image_size), np.float32)
        for m, w in zip(self.members, self.weights):
            if w > 0:
                heat += w * resize_maps(m.explain(images, cls)[1], self.image_size)
        return probs, _normalise(heat / max(sum(w for w in self.weights if w > 0), 1e-12))


def _probs_only(explainer, images: np.ndarray) -> np.ndarray:
    model = getattr(explainer, "model", None)
    if model is not None:
        return np.asarray(model.predict(np.asarray(images, np.float32), verbose=0), dtype=np.float32)
    return explainer.explain(images)[0]


# ----------------------------------------------------------------------------- pictures
def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with a jet-coloured heat map blended over it (uint8 RGB)."""
    from matplotlib import colormaps

    heat = resize_maps(heat[None], image.shape[0])[0]
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * colour, 0, 255).astype(np.uint8)


def explanation_figure(path: str | os.PathLike, image: np.ndarray, heat: np.ndarray, title: str, method: str) -> Path:
    """PNG: original | heat-map overlay, the prediction in the title."""
    from zoo.plots import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(5.2, 2.9))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("original", fontsize=9)
    axes[1].imshow(overlay(image, heat), interpolation="nearest")
    axes[1].set_title(method, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
