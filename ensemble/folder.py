"""The ensemble folder: ``ensemble.json`` (all numbers as plain lists) + ``card.json``.

``ensemble.json`` is self-describing so another tool (the ONNX exporter) can rebuild the
ensemble without this package: members (path relative to the ensemble folder, absolute path
as fallback, identity and card sha256, own image size), the method with its arrays, ``eps``, ``temperature``, optional TTA
transforms, classes and input spec, and a ``formula`` string. :func:`load` re-verifies
everything through the one reader, :func:`zoo.ensemble_file.read_ensemble`: the ensemble card, each member's files (``read_card``) *and* each member's identity
(:func:`zoo.artifacts.card_identity`) against the one recorded at build time, and that members still agree with each other.
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
from ensemble.combine import combine
from ensemble.members import Member
from zoo.content_cache import ContentCache
from zoo.ensemble_file import FORMAT_VERSION, SPEC_FILE, read_ensemble
from zoo.errors import ZooError

log = logging.getLogger(__name__)
# Member probabilities per image set, by the member's identity (its verified files): the vote and the stack
# of one run share members and are shown the same shift-suite sets (zoo.content_cache).
MEMBER_PROBS = ContentCache(max_entries=4096)

__all__ = ["FORMAT_VERSION", "SPEC_FILE", "Ensemble", "load", "member_entry", "predict_proba"]


def member_entry(member: Member, ensemble_folder: Path) -> dict[str, Any]:
    """How ``ensemble.json`` points at a member: relative path first, absolute fallback, identity (what is
    checked on load) and card hash (the card it was built from)."""
    try:
        rel = os.path.relpath(member.path, ensemble_folder.resolve())
    except ValueError:  # different drives on Windows
        rel = None
    return {
        "name": member.name,
        "member": member.card.get("member"),
        "image_size": int(member.card["input"]["image_size"]),
        "path": Path(rel).as_posix() if rel is not None else str(member.path),
        "abs_path": str(member.path),
        "card_sha256": member.sha256,
        "identity_sha256": member.identity,
    }


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

            self._models = [load_model(m.path, m.card, input_size=self.image_size) for m in self.members]
        return self._models

    def member_probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """``(M, N, C)`` member probabilities on raw RGB images (with the ensemble's TTA, if any)."""
        images = np.asarray(images)
        s = self.image_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ZooError(f"ensemble takes images of shape (N, {s}, {s}, 3), got {images.shape}")
        return np.stack(
            [
                MEMBER_PROBS.get_or_compute(
                    MEMBER_PROBS.key("member_probs", member.identity, s, self.tta, batch_size, images),
                    lambda model=model: tta_mod.predict(model, images, self.tta, batch_size),
                )
                for member, model in zip(self.members, self.models())
            ]
        )

    def predict_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return self.combine(self.member_probs(images, batch_size)).astype(np.float32)


def load(folder: str | os.PathLike) -> Ensemble:
    """Open an ensemble folder, refusing it if it or any member changed since it was built.

    Reading and verification is :func:`zoo.ensemble_file.read_ensemble`, the exporter's reader too.
    """
    f = read_ensemble(folder)
    members = [Member(p, c, sha) for p, c, sha in zip(f.member_paths, f.member_cards, f.member_shas)]
    return Ensemble(f.folder, f.spec, f.card, members)


def predict_proba(ensemble: str | os.PathLike | Ensemble, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Ensemble probabilities ``(N, C)`` float32 on raw RGB images (0..255), running the Keras members."""
    ens = ensemble if isinstance(ensemble, Ensemble) else load(ensemble)
    return ens.predict_proba(images, batch_size)
