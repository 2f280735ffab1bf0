"""What is being exported: a member/student run folder or an ensemble folder, verified.

Both kinds reduce to the same description (:class:`Source`): classes, input size, the card's
sha256, the member run folders in order and, for an ensemble, the :class:`Combination` read
from ``ensemble.json``. ``ensemble.json`` is read by :func:`zoo.ensemble_file.read_ensemble` (members by relative path,
absolute fallback, each member's identity re-checked) — the same reader the
``ensemble`` package uses — so the exporter depends on the file format, not on that package.
Members may take smaller images than the ensemble: each resizes the input in its own graph.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.ensemble_graph import Combination
from zoo.artifacts import card_sha256, read_card
from zoo.ensemble_file import read_ensemble
from zoo.errors import ZooError

log = logging.getLogger(__name__)

ENSEMBLE_SPEC = "ensemble.json"
RUN_KINDS = ("member", "student")


@dataclass
class Source:
    folder: Path
    card: dict[str, Any]
    kind: str
    name: str
    classes: list[str]
    image_size: int
    card_sha256: str
    members: list[Path]
    member_cards: list[dict[str, Any]]
    combination: Combination | None = None
    spec: dict[str, Any] | None = None  # ensemble.json as stored

    @property
    def data(self) -> dict[str, Any]:
        """The data description the source was trained/fitted on (ensemble: its first member's)."""
        data = self.card.get("data")
        if not isinstance(data, dict) or "source" not in data:
            data = self.member_cards[0].get("data")
        return data if isinstance(data, dict) else {}


def open_source(folder: str | os.PathLike) -> Source:
    """Verify ``folder`` (card and file hashes; for an ensemble, every member too) and describe it."""
    folder = Path(folder)
    card = read_card(folder)
    kind = card["kind"]
    if kind == "export":
        raise ZooError(f"{folder}: already an export; export the run or ensemble folder it came from")
    size = int(card["input"]["image_size"])
    # what every source states about itself; the members (and an ensemble's combination) follow
    own = (folder.resolve(), card, kind, str(card["name"]), list(card["classes"]), size, card_sha256(folder))
    if kind in RUN_KINDS:
        return Source(*own, [folder.resolve()], [card])
    if kind != "ensemble":
        raise ZooError(f"{folder}: cannot export a '{kind}' folder")
    ens = read_ensemble(folder)  # the one ensemble.json reader: member files and identities verified
    spec, paths, cards = ens.spec, ens.member_paths, ens.member_cards
    if ens.image_size != size:
        raise ZooError(f"{folder}: ensemble.json takes {ens.image_size} px, its card {size} px")
    comb = Combination.from_spec(spec, num_members=len(paths), num_classes=len(card["classes"]))
    return Source(*own, paths, cards, comb, spec)
