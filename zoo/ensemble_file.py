"""The one reader of an ensemble folder's ``ensemble.json`` (used by ``ensemble`` and ``export``).

Why here: the ensemble package writes the file and the exporter must rebuild the ensemble
without the ensemble package's Python API; two readers drifted apart (one accepted a member
without a recorded card hash, the other did not). This module is the file format's reader,
in ``zoo`` core so both sides import it without importing each other.

What it verifies: the ensemble card and its files; each member run folder (relative path
first, absolute fallback) with its files *and* its identity against the one recorded at build
time (:func:`zoo.artifacts.card_identity`: evaluating a member since is no change; files written
before identities were recorded pin the member's whole card hash, required); that members agree on what truly must agree — classes in order and the data
fingerprint — plus channels/range/colour/preprocessing. Members may take different image
sizes: the ensemble's ``input.image_size`` is the size it takes, and each member resizes it
to its own inside the graph (:func:`zoo.runs.resized_input`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import validate
from zoo.artifacts import card_identity, card_sha256, read_card, read_json_strict
from zoo.errors import ZooError

log = logging.getLogger(__name__)

SPEC_FILE = "ensemble.json"
FORMAT_VERSION = 1
METHODS = ("vote", "stack")
RUN_KINDS = ("member", "student")
# Input fields members must share; image_size may differ (each member resizes in its graph).
SHARED_INPUT_KEYS = ("channels", "dtype", "range", "color", "resize", "preprocessing")


@dataclass
class EnsembleFile:
    """A verified ensemble folder: its card, ``ensemble.json`` and its members in order."""

    folder: Path
    card: dict[str, Any]
    spec: dict[str, Any]
    member_paths: list[Path]
    member_cards: list[dict[str, Any]]
    member_shas: list[str]

    @property
    def image_size(self) -> int:
        return int(self.spec["input"]["image_size"])


def data_fingerprint(card: dict[str, Any]) -> str | None:
    data = card.get("data") or {}
    return data.get("fingerprint") if isinstance(data, dict) else None


def check_members_agree(cards: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """Refuse members that disagree on classes, data fingerprint or how pixels are fed (not size)."""
    ref, ref_name = cards[0], names[0]
    for card, name in zip(cards[1:], names[1:]):
        if list(card["classes"]) != list(ref["classes"]):
            raise ZooError(f"member '{name}' has classes {card['classes']} but '{ref_name}' has {ref['classes']}")
        a = {k: card["input"].get(k) for k in SHARED_INPUT_KEYS}
        b = {k: ref["input"].get(k) for k in SHARED_INPUT_KEYS}
        if a != b:
            diff = {k: (a[k], b[k]) for k in SHARED_INPUT_KEYS if a[k] != b[k]}
            raise ZooError(f"members '{name}' and '{ref_name}' take different inputs: {diff}")
        fa, fb = data_fingerprint(card), data_fingerprint(ref)
        if fa != fb:
            raise ZooError(
                f"members '{name}' and '{ref_name}' were trained on different data (fingerprint {fa} vs {fb})"
            )
    if data_fingerprint(ref) is None:
        log.warning("members record no data fingerprint; cannot check they saw the same data")


def ensemble_input_size(cards: Sequence[dict[str, Any]]) -> int:
    """The size an ensemble of these members takes: the largest member size (others resize down)."""
    return max(int(c["input"]["image_size"]) for c in cards)


def resolve_member(entry: Any, folder: Path) -> Path:
    """A member entry's run folder: ``path`` relative to the ensemble folder, else as given, else ``abs_path``."""
    if not isinstance(entry, dict):
        raise ZooError(f"{folder / SPEC_FILE}: member entry {entry!r} is not an object")
    rel = entry.get("path")
    if not isinstance(rel, str) or not rel:
        raise ZooError(f"{folder / SPEC_FILE}: member entry {entry!r} has no 'path'")
    candidates = [] if Path(rel).is_absolute() else [folder / rel]
    candidates += [Path(rel), Path(entry.get("abs_path") or "")]
    for c in candidates:
        if str(c) not in ("", ".") and (c / "card.json").is_file():
            return c.resolve()
    raise ZooError(f"{folder}: member '{entry.get('name', rel)}' not found at {rel} (nor {entry.get('abs_path')})")


def read_ensemble(folder: str | os.PathLike) -> EnsembleFile:
    """Open and verify an ensemble folder (see the module docstring for what is checked)."""
    folder = Path(folder)
    card = read_card(folder)
    if card["kind"] != "ensemble":
        raise ZooError(f"{folder}: a '{card['kind']}' folder, not an ensemble")
    if SPEC_FILE not in card["files"]:  # only files the card lists are loaded from a verified folder
        raise ZooError(f"{folder}: no {SPEC_FILE} listed in its card")
    spec = validate.ensemble_spec(read_json_strict(folder / SPEC_FILE), str(folder / SPEC_FILE))
    entries = spec["members"]
    paths, cards, shas = [], [], []
    for entry in entries:
        path = resolve_member(entry, folder)
        mcard = read_card(path)  # verifies the member's files
        if mcard["kind"] not in RUN_KINDS:
            raise ZooError(f"{path}: ensemble member is a '{mcard['kind']}' folder, not a member or student run")
        sha = card_sha256(path)
        if "identity_sha256" in entry:  # what the member is; evaluating it since is no change
            what, recorded, now = "identity", entry["identity_sha256"], card_identity(mcard)
        else:  # ensembles built before identities were recorded pin the whole card
            what, recorded, now = "card sha256", entry["card_sha256"], sha  # required (validate.ensemble_spec)
        if now != recorded:
            raise ZooError(
                f"{folder}: member '{entry.get('name', path.name)}' at {path} changed since the ensemble was built "
                f"({what} {now[:12]}… != recorded {recorded[:12]}…)"
            )
        paths.append(path)
        cards.append(mcard)
        shas.append(sha)
    check_members_agree(cards, [str(c["name"]) for c in cards])
    if list(cards[0]["classes"]) != list(spec["classes"]) or list(card["classes"]) != list(spec["classes"]):
        raise ZooError(f"{folder}: members' classes {cards[0]['classes']} differ from the ensemble's {spec['classes']}")
    try:
        size = int(spec["input"]["image_size"])
    except (KeyError, TypeError, ValueError):
        raise ZooError(f"{folder / SPEC_FILE}: input.image_size must be an integer") from None
    if size < 16 or int(card["input"]["image_size"]) != size:
        raise ZooError(f"{folder}: ensemble input size {size} is invalid or differs from its card's")
    return EnsembleFile(folder.resolve(), card, spec, paths, cards, shas)
