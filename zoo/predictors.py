"""How to run an artifact folder on images, by card kind: a small registry the core owns.

The core knows members and students (Keras). Other kinds register themselves when their
package is imported: ``ensemble`` registers ``"ensemble"``, ``export`` registers ``"export"``
(ONNX Runtime). The application layer (``zoo.cli``'s commands, ``zoo.pipeline``) imports those
packages, so every kind is available there, while ``zoo`` itself never imports them.

A loader is ``loader(folder, card) -> predict`` where ``predict(uint8 images (N, H, W, 3)) ->
probabilities (N, C)``; the loaded model is kept by the returned callable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.artifacts import read_card
from zoo.errors import ZooError

Predict = Callable[[np.ndarray], np.ndarray]
Loader = Callable[[Path, dict[str, Any]], Predict]
_LOADERS: dict[str, Loader] = {}
# Which package registers a kind, for the error when it was not imported.
_PROVIDERS = {"ensemble": "ensemble", "export": "export"}


def register(kind: str, loader: Loader) -> None:
    """Make ``loader`` the way to run folders of card kind ``kind`` (the last registration wins)."""
    _LOADERS[kind] = loader


def registered() -> list[str]:
    return sorted(_LOADERS)


def load_predictor(folder: str | os.PathLike, card: dict[str, Any] | None = None) -> Predict:
    """A ``predict(images) -> probs`` callable for any complete artifact folder whose kind is registered."""
    folder = Path(folder)
    card = card or read_card(folder)
    loader = _LOADERS.get(card["kind"])
    if loader is None:
        hint = (
            f" (import the '{_PROVIDERS[card['kind']]}' package, which registers it)"
            if card["kind"] in _PROVIDERS
            else ""
        )
        raise ZooError(f"{folder}: no predictor is registered for a '{card['kind']}' folder{hint}")
    return loader(folder, card)


def _keras_run(folder: Path, card: dict[str, Any]) -> Predict:
    from zoo.evaluate import predict_model
    from zoo.runs import load_model

    model = load_model(folder, card)
    return lambda images: predict_model(model, images)


register("member", _keras_run)
register("student", _keras_run)
