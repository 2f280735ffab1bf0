"""Read run folders (members and students): the card, the Keras model, stored probabilities."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.artifacts import load_npy, read_card, safe_join
from zoo.errors import ZooError

MODEL_FILE = "model.keras"


def load_model(folder: str | os.PathLike, card: dict[str, Any] | None = None, input_size: int | None = None):
    """The verified Keras model of a complete run folder (``safe_mode=True``: no arbitrary code).

    ``input_size`` (ensembles of members at different sizes): the model takes images of that
    size and resizes them to its own inside the graph (:func:`resized_input`).
    """
    import keras

    import zoo.models  # noqa: F401  (registers custom layers for deserialisation)

    folder = Path(folder)
    card = card or read_card(folder)
    if card["kind"] not in ("member", "student"):
        raise ZooError(f"{folder}: a {card['kind']} folder has no Keras model; expected a member or student run")
    path = safe_join(folder, card.get("model_file", MODEL_FILE))
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails in many ways (zip, JSON, h5, config keys)
        detail = " ".join(str(exc).split())[:300]
        raise ZooError(f"{path}: cannot load Keras model, corrupt or not a zoo model? ({type(exc).__name__}: {detail})") from None
    return model if input_size is None else resized_input(model, int(input_size))


def resized_input(model, input_size: int):
    """``model`` behind a bilinear resize from ``input_size`` to its own input size (or ``model`` itself).

    Why in the graph: an ensemble (and its one ONNX file) takes one image size; each member
    resizes the raw image to the size it was trained at, so Keras inference, the fitted
    combination and the export compute the same thing. The resize is Keras ``Resizing``
    (bilinear, half-pixel centres, no antialias), which tf2onnx converts to one ONNX ``Resize``.
    """
    import keras

    own = int(model.input_shape[1])
    if own == input_size:
        return model
    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = keras.layers.Resizing(own, own, interpolation="bilinear", name=f"resize_{input_size}_to_{own}")(inputs)
    return keras.Model(inputs, model(x), name=f"{model.name}_from{input_size}")


def load_probs(folder: str | os.PathLike, split: str, card: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stored ``(probabilities (N, C), labels (N,))`` of a run on ``split``."""
    folder = Path(folder)
    card = card or read_card(folder)
    p, y = folder / "probs" / f"{split}.npy", folder / "probs" / f"{split}_labels.npy"
    if not p.is_file() or not y.is_file():
        raise ZooError(f"{folder}: no stored probabilities for split '{split}'")
    probs, labels = load_npy(p), load_npy(y)
    if probs.ndim != 2 or probs.shape[1] != len(card["classes"]) or len(probs) != len(labels):
        raise ZooError(f"{folder}: stored probabilities for '{split}' have shape {probs.shape}, labels {labels.shape}")
    return probs.astype(np.float32), labels.astype(np.int64)
