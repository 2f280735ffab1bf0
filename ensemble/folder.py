"""The ensemble folder: ``ensemble.json`` (all numbers as plain lists) + ``card.json``.

``ensemble.json`` is self-describing so another tool (the ONNX exporter) can rebuild the
ensemble without this package: members (path relative to the ensemble folder, absolute path
as fallback, card sha256), the method with its arrays, ``eps``, ``temperature``, optional TTA
transforms, classes and input spec, and a ``formula`` string. :func:`load` re-verifies
everything: the ensemble card, each member's files (``read_card``) *and* each member's card
hash against the one recorded at build time, and that members still agree with each other.
No pickle anywhere: arrays are JSON lists or ``.npy`` written with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble import tta as tta_mod
from ensemble.combine import METHODS, combine
from ensemble.members import Member, check_consistent, input_spec, open_member
from zoo import validate
from zoo.artifacts import read_card, read_json_strict
from zoo.errors import ZooError

log = logging.getLogger(__name__)

SPEC_FILE = "ensemble.json"
FORMAT_VERSION = 1


def member_entry(member: Member, ensemble_folder: Path) -> dict[str, Any]:
    """How ``ensemble.json`` points at a member: relative path first, absolute fallback, card hash."""
    try:
        rel = os.path.relpath(member.path, ensemble_folder.resolve())
    except ValueError:  # different drives on Windows
        rel = None
    return {
        "name": member.name,
        "member": member.card.get("member"),
        "path": Path(rel).as_posix() if rel is not None else str(member.path),
        "abs_path": str(member.path),
        "card_sha256": member.sha256,
    }


def resolve_member(entry: dict[str, Any], folder: Path) -> Path:
    candidates = [folder / entry["path"]] if not Path(entry["path"]).is_absolute() else []
    candidates += [Path(entry["path"]), Path(entry.get("abs_path", ""))]
    for c in candidates:
        if str(c) and (c / "card.json").is_file():
            return c.resolve()
    raise ZooError(f"{folder}: member '{entry.get('name')}' not found at {entry['path']} (nor {entry.get('abs_path')})")


@dataclass
class Ensemble:
    """A loaded, verified ensemble; Keras member models are loaded on first use."""

    folder: Path
    spec: dict[str, Any]
    card: dict[str, Any]
    members: list[Member]
    _models: list[Any] | None = field(default=None, repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.spec["classes"])

    @property
    def image_size(self) -> int:
        return int(self.spec["input"]["image_size"])

    @property
    def tta(self) -> list[str] | None:
        return self.spec.get("tta")

    def combine(self, member_probs: np.ndarray) -> np.ndarray:
        return combine(self.spec, member_probs)

    def models(self) -> list[Any]:
        if self._models is None:
            from zoo.runs import load_model

            self._models = [load_model(m.path, m.card) for m in self.members]
        return self._models

    def member_probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """``(M, N, C)`` member probabilities on raw RGB images (with the ensemble's TTA, if any)."""
        images = np.asarray(images)
        s = self.image_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ZooError(f"ensemble takes images of shape (N, {s}, {s}, 3), got {images.shape}")
        return np.stack([tta_mod.predict(m, images, self.tta, batch_size) for m in self.models()])

    def predict_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return self.combine(self.member_probs(images, batch_size)).astype(np.float32)


def load(folder: str | os.PathLike) -> Ensemble:
    """Open an ensemble folder, refusing it if it or any member changed since it was built."""
    folder = Path(folder)
    card = read_card(folder)
    if card["kind"] != "ensemble":
        raise ZooError(f"{folder}: a '{card['kind']}' folder, not an ensemble")
    if SPEC_FILE not in card["files"]:  # only files the card lists are loaded
        raise ZooError(f"{folder}: no {SPEC_FILE} listed in its card")
    spec = validate.ensemble_spec(read_json_strict(folder / SPEC_FILE), str(folder / SPEC_FILE))
    if spec["format"] != FORMAT_VERSION or spec["method"] not in METHODS:
        raise ZooError(f"{folder / SPEC_FILE}: unsupported format {spec.get('format')!r} or method {spec.get('method')!r}")
    if spec["classes"] != card["classes"]:
        raise ZooError(f"{folder}: {SPEC_FILE} classes {spec['classes']} differ from the card's {card['classes']}")
    members = []
    for entry in spec["members"]:
        m = open_member(resolve_member(entry, folder))  # verifies the member's files
        if m.sha256 != entry["card_sha256"]:
            raise ZooError(f"{folder}: member '{entry['name']}' at {m.path} changed since the ensemble was built "
                           f"(card sha256 {m.sha256[:12]}… != recorded {entry['card_sha256'][:12]}…)")
        members.append(m)
    check_consistent([m.card for m in members], [m.name for m in members])
    if list(members[0].card["classes"]) != list(spec["classes"]):
        raise ZooError(f"{folder}: members' classes {members[0].card['classes']} differ from the ensemble's {spec['classes']}")
    if input_spec(members[0].card) != {k: spec["input"].get(k) for k in input_spec(members[0].card)}:
        raise ZooError(f"{folder}: members' input spec differs from the ensemble's")
    return Ensemble(folder.resolve(), spec, card, members)


def predict_proba(ensemble: str | os.PathLike | Ensemble, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Ensemble probabilities ``(N, C)`` float32 on raw RGB images (0..255), running the Keras members."""
    ens = ensemble if isinstance(ensemble, Ensemble) else load(ensemble)
    return ens.predict_proba(images, batch_size)
