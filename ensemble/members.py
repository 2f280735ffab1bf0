"""Ensemble members: verified run folders that agree on what they classify and how they are fed.

An ensemble only makes sense when every member predicts the same classes in the same order,
from the same kind of pixels (channels, range, colour order, preprocessing), trained on the
same data (fingerprint). :func:`open_members` verifies each run folder's card and files and
refuses those disagreements (:func:`zoo.ensemble_file.check_members_agree`). Image sizes may
differ: the ensemble takes the largest and each smaller member resizes it in its graph. :class:`MemberProbs` supplies member probabilities per split:
the stored ``probs/<split>.npy`` of each run when present (no recomputation), otherwise the
Keras model evaluated on the data (optionally with test-time augmentation).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble import tta as tta_mod
from zoo.artifacts import card_identity, card_sha256, probs_files, read_card
from zoo.ensemble_file import check_members_agree, data_fingerprint, ensemble_input_size
from zoo.errors import ZooError

log = logging.getLogger(__name__)

INPUT_KEYS = ("image_size", "channels", "dtype", "range", "color", "resize", "preprocessing")
EVAL_SPLITS = ("val", "test")


@dataclass
class Member:
    path: Path
    card: dict[str, Any]
    sha256: str

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def identity(self) -> str:
        """What the ensemble pins (:func:`zoo.artifacts.card_identity`): unchanged by evaluating the member."""
        return card_identity(self.card)

    def stored_splits(self) -> set[str]:
        return {
            s
            for s in EVAL_SPLITS
            if all((self.path / rel).is_file() for rel in probs_files(s)) and probs_files(s)[0] in self.card["files"]
        }


def input_spec(card: dict[str, Any]) -> dict[str, Any]:
    return {k: card["input"].get(k) for k in INPUT_KEYS}


def check_consistent(cards: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """Refuse members that disagree on classes, data fingerprint or pixel format (sizes may differ)."""
    check_members_agree(cards, names)


def member_size(member: Member) -> int:
    return int(member.card["input"]["image_size"])


def open_member(path: str | os.PathLike) -> Member:
    path = Path(path).resolve()
    card = read_card(path)  # verifies every file's sha256
    if card["kind"] not in ("member", "student"):
        raise ZooError(f"{path}: a '{card['kind']}' folder cannot be an ensemble member (need a member or student run)")
    return Member(path, card, card_sha256(path))


def open_members(paths: Sequence[str | os.PathLike]) -> list[Member]:
    if not paths:
        raise ZooError("an ensemble needs at least one member run folder")
    members = [open_member(p) for p in paths]
    shas = [m.sha256 for m in members]
    if len(set(shas)) != len(shas):
        raise ZooError("the same run folder is listed twice among the members")
    check_consistent([m.card for m in members], [m.name for m in members])
    return members


def load_member_data(members: Sequence[Member], data: Any, size: int | None = None):
    """The members' dataset at the ensemble's input size (the largest member size); ``data``: a source string, a Dataset, or a callable returning one."""
    from zoo.data import Dataset, load_dataset, split_kwargs

    size = int(size or ensemble_input_size([m.card for m in members]))
    if callable(data):  # lazily loaded (e.g. the pipeline's shared dataset)
        data = data()
    if data is None:
        raise ZooError("member probabilities must be computed from images, but no --data was given")
    ds = (
        data
        if isinstance(data, Dataset)
        else load_dataset(str(data), size, **split_kwargs(members[0].card.get("data")))
    )
    if ds.image_size != size:
        raise ZooError(f"data is at {ds.image_size} px but the members take {size} px")
    if list(ds.class_names) != list(members[0].card["classes"]):
        raise ZooError(f"data classes {ds.class_names} differ from the members' {members[0].card['classes']}")
    want = data_fingerprint(members[0].card)
    if want is not None and ds.fingerprint != want:
        raise ZooError(
            f"data fingerprint {ds.fingerprint} differs from the members' {want}: not the data they were trained on"
        )
    return ds


@dataclass
class MemberProbs:
    """Member probabilities ``(M, N, C)`` per split, from stored files or from the models."""

    members: list[Member]
    data: Any = None
    tta: list[str] | None = None
    batch_size: int = 64
    # Use every member's stored probabilities at its own size, as an ensemble whose input is the
    # source resolution computes them (each member resizes from it with the loader's filter).
    own_size: bool = False
    _dataset: Any = field(default=None, repr=False)
    _cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return ensemble_input_size([m.card for m in self.members])

    def dataset(self):
        if self._dataset is None:
            self._dataset = load_member_data(self.members, self.data)
        return self._dataset

    def available_splits(self) -> list[str]:
        """Evaluation splits: stored by every member, or (when images are needed anyway) in the data."""
        stored = set.intersection(
            *(m.stored_splits() if member_size(m) == self.input_size else set() for m in self.members)
        )
        if self.tta is None and "val" in stored and self._dataset is None:
            return [s for s in EVAL_SPLITS if s in stored]
        ds = self.dataset()
        return [s for s in EVAL_SPLITS if s in ds.splits and len(ds.splits[s]) > 0]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._cache:
            self._cache[name] = self._compute(name)
        return self._cache[name]

    def _compute(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        from zoo.runs import load_model, load_probs

        probs, labels = [], None
        how = []
        for m in self.members:
            # Stored probabilities are only the ensemble's when the member takes the ensemble's size;
            # a smaller member sees the ensemble's images resized in its graph, as at inference.
            if self.tta is None and name in m.stored_splits() and (self.own_size or member_size(m) == self.input_size):
                p, y = load_probs(m.path, name, m.card)
                how.append("stored")
            else:
                split = self.dataset().split(name)
                model = load_model(m.path, m.card, input_size=self.input_size)
                log.info(
                    "computing %s probabilities of member '%s'%s",
                    name,
                    m.name,
                    f" with TTA {self.tta}" if self.tta else "",
                )
                p, y = tta_mod.predict(model, split.images, self.tta, self.batch_size), split.labels
                how.append("computed" + ("+tta" if self.tta else ""))
            if labels is None:
                labels = y
            elif len(y) != len(labels) or not np.array_equal(y, labels):
                raise ZooError(
                    f"member '{m.name}' has {name} probabilities over different rows than '{self.members[0].name}'"
                )
            probs.append(p)
        if self._dataset is not None and name in self._dataset.splits:
            if not np.array_equal(self._dataset.splits[name].labels, labels):
                raise ZooError(f"stored {name} probabilities are not over the rows of the given data's '{name}' split")
        self.sources[name] = ",".join(sorted(set(how)))
        return np.stack(probs).astype(np.float64), np.asarray(labels, dtype=np.int64)
