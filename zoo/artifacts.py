"""The artifact contract shared by every stage: folders with a ``card.json``.

A run, ensemble or export folder is *complete* exactly when its ``card.json`` exists: the card
is written last, after every other file, and records the sha256 of each file in the folder.
Readers call :func:`read_card`, which refuses incomplete folders, unknown schema versions,
paths that escape the folder and files whose hash no longer matches. Every write goes to a
temporary name first and is renamed into place, so an interruption never leaves a
half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from zoo.errors import ZooError

CARD = "card.json"
SCHEMA_VERSION = 1
KINDS = ("member", "student", "ensemble", "export")
REQUIRED_KEYS = ("schema", "kind", "name", "classes", "input", "files")
# Working state that is not part of the artifact: never hashed, may change after completion.
UNHASHED_DIRS = ("logs", "checkpoint")
_UMASK = os.umask(0)
os.umask(_UMASK)


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text; file names with undecodable bytes (surrogate escapes) are written back byte-exact."""
    return write_bytes(path, text.encode("utf-8", "surrogateescape"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Load an array written by :func:`write_npy`; pickled object arrays are refused."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ZooError(f"{path}: file not found") from None
    except ValueError as exc:
        raise ZooError(f"{path}: not a plain numeric array ({exc})") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ----------------------------------------------------------------------------- hashing
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def folder_files(folder: Path) -> dict[str, str]:
    """sha256 of every artifact file in ``folder`` (relative POSIX paths), card and work dirs excluded."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or p.name == CARD or p.name.startswith("."):
            continue
        if rel.parts[0] in UNHASHED_DIRS:
            continue
        out[rel.as_posix()] = sha256_file(p)
    return out


def safe_join(folder: str | os.PathLike, relative: str) -> Path:
    """``folder / relative``, refusing absolute paths and ``..`` that would leave ``folder``."""
    folder = Path(folder).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise ZooError(f"path '{relative}' in {folder} must be relative to its folder")
    target = (folder / rel).resolve()
    if target != folder and folder not in target.parents:
        raise ZooError(f"path '{relative}' escapes its folder {folder}")
    return target


# ----------------------------------------------------------------------------- cards
def environment() -> dict[str, str]:
    """Library versions that decide whether an artifact can be reproduced."""
    import importlib.metadata as md

    env = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("bloodcell-zoo", "tensorflow", "tensorflow-cpu", "keras", "numpy", "scikit-learn", "onnx", "tf2onnx", "onnxruntime"):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return env


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_card(folder: str | os.PathLike, card: dict[str, Any]) -> dict[str, Any]:
    """Hash every file in ``folder``, then write ``card.json`` last: the folder is now complete."""
    folder = Path(folder)
    card = dict(card)
    card.setdefault("schema", SCHEMA_VERSION)
    card.setdefault("created", now())
    card.setdefault("environment", environment())
    card["files"] = folder_files(folder)
    validate_card(card, folder)
    write_json(folder / CARD, card)
    return card


def update_card(folder: str | os.PathLike, *, verify: bool = True, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` (dicts merge one level deep) into the card and re-hash the folder.

    ``verify=False`` is for a caller that verified the folder before adding its own files.
    """
    card = read_card(folder, verify=verify)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    return write_card(folder, card)


def validate_card(card: Any, folder: Path | None = None) -> None:
    where = f"{folder / CARD}" if folder else CARD
    if not isinstance(card, dict):
        raise ZooError(f"{where}: not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise ZooError(f"{where}: missing key(s) {missing}")
    if card["schema"] != SCHEMA_VERSION:
        raise ZooError(f"{where}: card schema {card['schema']!r} is not supported (this zoo reads schema {SCHEMA_VERSION})")
    if card["kind"] not in KINDS:
        raise ZooError(f"{where}: kind {card['kind']!r} is not one of {KINDS}")
    classes = card["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise ZooError(f"{where}: 'classes' must be a non-empty list of names")
    if len(set(classes)) != len(classes):
        raise ZooError(f"{where}: duplicate class names {classes}")
    inp = card["input"]
    if not isinstance(inp, dict) or not isinstance(inp.get("image_size"), int):
        raise ZooError(f"{where}: 'input.image_size' must be an integer")
    if not isinstance(card["files"], dict):
        raise ZooError(f"{where}: 'files' must map file names to sha256")
    if folder is not None:
        for rel in card["files"]:
            safe_join(folder, rel)


def read_card(folder: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Load and validate a folder's card; with ``verify`` also check every file's sha256.

    Refuses (with :class:`ZooError`) folders without a card (never finished), cards of another
    schema, and folders whose files were changed, removed or replaced since the card was written.
    """
    folder = Path(folder)
    path = folder / CARD
    if not folder.is_dir():
        raise ZooError(f"{folder}: no such folder")
    if not path.is_file():
        raise ZooError(f"{folder}: incomplete artifact folder (no {CARD}; the stage that writes it did not finish)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ZooError(f"{path}: not valid JSON ({exc})") from None
    validate_card(card, folder)
    if verify:
        verify_files(folder, card)
    return card


def verify_files(folder: Path, card: dict[str, Any]) -> None:
    for rel, expected in card["files"].items():
        target = safe_join(folder, rel)
        if not target.is_file():
            raise ZooError(f"{folder}: file '{rel}' listed in the card is missing")
        actual = sha256_file(target)
        if actual != expected:
            raise ZooError(f"{folder}: file '{rel}' was modified after the card was written (sha256 mismatch)")


def card_sha256(folder: str | os.PathLike) -> str:
    """Identity of a complete folder: the hash of its card (which hashes every file)."""
    return sha256_file(Path(folder) / CARD)
