"""What is being exported: a member/student run folder or an ensemble folder, verified.

Both kinds reduce to the same description (:class:`Source`): classes, input size, the card's
sha256, the member run folders in order and, for an ensemble, the :class:`Combination` read
from ``ensemble.json``. ``ensemble.json`` is read directly (members by relative path, absolute
fallback, each member's card hash re-checked) so the exporter does not depend on the
``ensemble`` package's Python API, only on its file format.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.ensemble_graph import Combination
from zoo import validate
from zoo.artifacts import card_sha256, read_card, read_json_strict
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


def _member_path(entry: dict[str, Any], folder: Path) -> Path:
    rel = entry.get("path")
    if not isinstance(rel, str) or not rel:
        raise ZooError(f"{folder / ENSEMBLE_SPEC}: member entry {entry!r} has no 'path'")
    candidates = [] if Path(rel).is_absolute() else [folder / rel]
    candidates += [Path(rel), Path(entry.get("abs_path") or "")]
    for c in candidates:
        if str(c) not in ("", ".") and (c / "card.json").is_file():
            return c.resolve()
    raise ZooError(f"{folder}: member '{entry.get('name', rel)}' not found at {rel} (nor {entry.get('abs_path')})")


def open_source(folder: str | os.PathLike) -> Source:
    """Verify ``folder`` (card and file hashes; for an ensemble, every member too) and describe it."""
    folder = Path(folder)
    card = read_card(folder)
    kind = card["kind"]
    if kind == "export":
        raise ZooError(f"{folder}: already an export; export the run or ensemble folder it came from")
    size = int(card["input"]["image_size"])
    if kind in RUN_KINDS:
        return Source(folder.resolve(), card, kind, str(card["name"]), list(card["classes"]), size,
                      card_sha256(folder), [folder.resolve()], [card])
    if kind != "ensemble":
        raise ZooError(f"{folder}: cannot export a '{kind}' folder")
    if ENSEMBLE_SPEC not in card["files"]:  # only files the card lists are loaded
        raise ZooError(f"{folder}: ensemble folder without {ENSEMBLE_SPEC} in its card")
    spec = validate.ensemble_spec(read_json_strict(folder / ENSEMBLE_SPEC), str(folder / ENSEMBLE_SPEC))
    if spec["classes"] != card["classes"]:
        raise ZooError(f"{folder}: {ENSEMBLE_SPEC} classes {spec['classes']} differ from the card's {card['classes']}")
    entries = spec.get("members")
    if not isinstance(entries, list) or not entries:
        raise ZooError(f"{folder / ENSEMBLE_SPEC}: 'members' must be a non-empty list")
    paths, cards = [], []
    for entry in entries:
        path = _member_path(entry, folder)
        mcard = read_card(path)
        if mcard["kind"] not in RUN_KINDS:
            raise ZooError(f"{path}: ensemble member is a '{mcard['kind']}' folder, not a member or student run")
        recorded = entry["card_sha256"]  # required by validate.ensemble_spec
        if card_sha256(path) != recorded:
            raise ZooError(f"{folder}: member '{entry.get('name', path.name)}' at {path} changed since the ensemble was built")
        if list(mcard["classes"]) != list(card["classes"]):
            raise ZooError(f"{path}: member classes {mcard['classes']} differ from the ensemble's {card['classes']}")
        if int(mcard["input"]["image_size"]) != size:
            raise ZooError(f"{path}: member takes {mcard['input']['image_size']} px, the ensemble {size} px")
        paths.append(path)
        cards.append(mcard)
    comb = Combination.from_spec(spec, num_members=len(paths), num_classes=len(card["classes"]))
    return Source(folder.resolve(), card, kind, str(card["name"]), list(card["classes"]), size,
                  card_sha256(folder), paths, cards, comb, spec)
