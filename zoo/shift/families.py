"""Which shift families an artifact trained for, read from its card (``"augment_families"``).

Writers put the field in the card: members from their augmentation policy (computed from the
ops' declared families, :func:`zoo.augment.spec.covered_families`), students as the union of
their teacher's and their own, ensembles as the union of their members' plus whatever data
their combiner was fitted on, exports copy their source's. Cards written before the field
existed are still read: a run's policy is in ``training.augment``; an ensemble's members and
an export's source are followed through their folders (paths as ``ensemble.json`` and the
export card record them). ``None`` means "not known" (treated as covering no family).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zoo.artifacts import read_card
from zoo.errors import ZooError

log = logging.getLogger(__name__)
FIELD = "augment_families"


def union(*groups: Iterable[str] | None) -> list[str]:
    """Sorted union of family lists (``None`` entries are skipped)."""
    out: set[str] = set()
    for g in groups:
        out.update(g or ())
    return sorted(out)


def from_policy(augment: Any) -> list[str]:
    """Families a training policy covers (spec string, list, or ``Policy.to_dict()``)."""
    from zoo.augment.spec import covered_families

    return covered_families(augment)


def _check(value: Any, where: str) -> list[str]:
    from zoo.shift import FAMILIES

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ZooError(f"{where}: '{FIELD}' must be a list of family names, got {value!r}")
    unknown = sorted(set(value) - set(FAMILIES))
    if unknown:
        log.warning(
            "%s: unknown shift famil%s %s in '%s' (kept)", where, "y" if len(unknown) == 1 else "ies", unknown, FIELD
        )
    return sorted(set(value))


def artifact_families(
    folder: str | os.PathLike, card: dict[str, Any] | None = None, _depth: int = 0
) -> list[str] | None:
    """The families the artifact in ``folder`` trained for, or ``None`` if its cards do not say."""
    folder = Path(folder)
    card = card or read_card(folder, verify=False)
    if FIELD in card:
        return _check(card[FIELD], str(folder / "card.json"))
    if _depth > 4:
        return None
    kind = card["kind"]
    try:
        if kind in ("member", "student"):
            augment = (card.get("training") or {}).get("augment")
            own = from_policy(augment) if augment is not None else None
            if kind == "student":
                teacher = (card.get("distillation") or {}).get("teacher") or {}
                t = _follow(folder, teacher.get("path"), teacher.get("abs_path"), _depth)
                return None if own is None and t is None else union(own, t)
            return own
        if kind == "ensemble":
            spec = json.loads((folder / "ensemble.json").read_text(encoding="utf-8"))
            found = [_follow(folder, m.get("path"), m.get("abs_path"), _depth) for m in spec.get("members", [])]
            return None if any(f is None for f in found) else union(*found)
        if kind == "export":
            src = card.get("source") or {}
            return _follow(folder, src.get("folder"), None, _depth)
    except (OSError, ValueError, ZooError) as exc:
        log.warning("%s: cannot tell which shift families it trained on (%s)", folder, exc)
    return None


def _follow(folder: Path, path: str | None, abs_path: str | None, depth: int) -> list[str] | None:
    for p in (path, abs_path):
        if not p:
            continue
        target = Path(p) if Path(p).is_absolute() else folder / p
        if (target / "card.json").is_file():
            return artifact_families(target, None, depth + 1)
    return None
