"""Read run folders (members and students): the card, the Keras model, stored probabilities."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.artifacts import load_npy, probs_files, read_card, safe_join
from zoo.errors import ZooError
from zoo.safeio import MAX_MODEL_BYTES, check_regular
from zoo.validate import probabilities

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
    rel = card.get("model_file", MODEL_FILE)
    path = safe_join(folder, rel)
    if rel not in card["files"]:  # only files the card lists are loaded from a verified folder
        raise ZooError(f"{folder}: model file '{rel}' is not one of the files its card lists")
    check_regular(path, MAX_MODEL_BYTES)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails in many ways (zip, JSON, h5, config keys)
        detail = " ".join(str(exc).split())[:300]
        raise ZooError(
            f"{path}: cannot load Keras model, corrupt or not a zoo model? ({type(exc).__name__}: {detail})"
        ) from None
    check_model_outputs(model, card, str(path))
    return model if input_size is None else resized_input(model, int(input_size))


def check_model_outputs(model, card: dict[str, Any], where: str) -> None:
    """Refuse a model whose input is not the card's or whose outputs are not probabilities (one probe image)."""
    size = int(card["input"]["image_size"])
    try:
        out = model(np.full((1, size, size, 3), 128.0, np.float32), training=False)
    except Exception as exc:  # noqa: BLE001 - a model built for another input shape fails in Keras/TF-specific ways
        raise ZooError(
            f"{where}: the model does not take the card's input (1, {size}, {size}, 3): "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        ) from None
    probabilities(np.asarray(out), where, len(card["classes"]))


# The in-graph resize layer's name; export.quantize finds these nodes by the pattern and keeps them float.
RESIZE_LAYER_PATTERN = r"resize_\d+_to_\d+"


def resize_layer_name(source: int, own: int) -> str:
    return f"resize_{source}_to_{own}"


def resized_input(model, input_size: int):
    """``model`` behind a resize from ``input_size`` to its own input size (or ``model`` itself).

    Why in the graph: an ensemble (and its one ONNX file) takes one image size; each member
    resizes the raw image to the size it was trained at, so Keras inference, the fitted
    combination and the export compute the same thing. The resize is the loader's own filter
    (PIL's antialiased bilinear, :class:`zoo.models.resize.PilBilinearResize`, two MatMuls in ONNX),
    so a 64 px member inside a 96 px ensemble sees the pixels it was trained on, not aliased ones.
    """
    import keras

    from zoo.models.resize import PilBilinearResize

    own = int(model.input_shape[1])
    if own == input_size:
        return model
    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = PilBilinearResize(own, own, name=resize_layer_name(input_size, own))(inputs)
    return keras.Model(inputs, model(x), name=f"{model.name}_from{input_size}")


def load_probs(
    folder: str | os.PathLike, split: str, card: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stored ``(probabilities (N, C), labels (N,))`` of a run on ``split``."""
    folder = Path(folder)
    card = card or read_card(folder)
    rel_p, rel_y = probs_files(split)
    p, y = folder / rel_p, folder / rel_y
    if not p.is_file() or not y.is_file():
        raise ZooError(f"{folder}: no stored probabilities for split '{split}'")
    unlisted = [f for f in (rel_p, rel_y) if f not in card["files"]]
    if unlisted:
        raise ZooError(f"{folder}: {unlisted} not among the files its card lists (added after the run?); refused")
    probs, labels = load_npy(p), load_npy(y)
    if probs.ndim != 2 or probs.shape[1] != len(card["classes"]) or len(probs) != len(labels):
        raise ZooError(f"{folder}: stored probabilities for '{split}' have shape {probs.shape}, labels {labels.shape}")
    if probs.dtype.kind not in "fiu" or labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise ZooError(f"{folder}: stored probabilities/labels for '{split}' have dtypes {probs.dtype}/{labels.dtype}")
    probabilities(probs, f"{folder}: {rel_p}", len(card["classes"]))
    if len(labels) and (labels.min() < 0 or labels.max() >= len(card["classes"])):
        raise ZooError(f"{folder}: {rel_y} holds labels outside 0..{len(card['classes']) - 1}")
    return probs.astype(np.float32), labels.astype(np.int64)
