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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError

CARD = "card.json"
SCHEMA_VERSION = 1
KINDS = ("member", "student", "ensemble", "export")
REQUIRED_KEYS = ("schema", "kind", "name", "classes", "input", "files")
# Never hashed: working state that is not part of the artifact (may change after completion), and a
# member's snapshot members (zoo.train, ``snapshots > 1``), each a folder that its own card guards.
SNAPSHOTS_DIR = "snapshots"
UNHASHED_DIRS = ("logs", "checkpoint", SNAPSHOTS_DIR)
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


def probs_files(split: str, suffix: str = "") -> tuple[str, str]:
    """Where a folder keeps its probabilities and labels for ``split``, relative to the folder.

    The one place that names ``probs/<split>.npy`` and ``probs/<split>_labels.npy``: members,
    students and ensembles write them (:func:`write_probs`), ensembles, distillation and the
    report read them. ``suffix`` names a variant of the probabilities (``"_oof"``: out-of-fold).
    """
    return f"probs/{split}{suffix}.npy", f"probs/{split}_labels.npy"


def write_probs(folder: str | os.PathLike, split: str, probs: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Store ``probs`` (N, C) and, when given, ``labels`` (N,) for ``split`` in ``folder``."""
    p, y = probs_files(split)
    write_npy(Path(folder) / p, probs)
    if labels is not None:
        write_npy(Path(folder) / y, labels)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Load an array written by :func:`write_npy`; pickled object arrays are refused."""
    from zoo.safeio import MAX_ARRAY_BYTES, check_regular

    try:
        check_regular(path, MAX_ARRAY_BYTES)  # np.load on a FIFO would block forever
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
    for dist in (
        "bloodcell-zoo",
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "numpy",
        "scikit-learn",
        "onnx",
        "tf2onnx",
        "onnxruntime",
    ):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return env


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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
    """Every field the zoo reads back from a card: type, range, finiteness, uniqueness (zoo.validate)."""
    from zoo import validate as v

    where = f"{folder / CARD}" if folder else CARD
    if not isinstance(card, dict):
        raise ZooError(f"{where}: not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise ZooError(f"{where}: missing key(s) {missing}")
    if card["schema"] != SCHEMA_VERSION or isinstance(card["schema"], bool):
        raise ZooError(
            f"{where}: card schema {card['schema']!r} is not supported (this zoo reads schema {SCHEMA_VERSION})"
        )
    if card["kind"] not in KINDS:
        raise ZooError(f"{where}: kind {card['kind']!r} is not one of {KINDS}")
    if not isinstance(card["name"], str) or not card["name"].strip() or len(card["name"]) > 255:
        raise ZooError(f"{where}: 'name' must be a non-empty string")
    v.class_names(card["classes"], f"{where}: 'classes'")
    inp = card["input"]
    if not isinstance(inp, dict):
        raise ZooError(f"{where}: 'input' must be an object")
    v.image_size(inp.get("image_size"), f"{where}: 'input.image_size'")
    if "channels" in inp and inp["channels"] != 3:
        raise ZooError(f"{where}: 'input.channels' must be 3 (RGB), got {inp['channels']!r}")
    if not isinstance(card["files"], dict):
        raise ZooError(f"{where}: 'files' must map file names to sha256")
    for rel, digest in card["files"].items():
        v.sha256(digest, f"{where}: 'files[{rel[:80]}]'")
        if folder is not None:
            safe_join(folder, rel)
    if "model_file" in card and isinstance(card["model_file"], str) and folder is not None:
        safe_join(folder, card["model_file"])
    if "model_file" in card and (not isinstance(card["model_file"], str) or card["model_file"] not in card["files"]):
        raise ZooError(f"{where}: 'model_file' {str(card['model_file'])[:80]!r} is not one of the files the card lists")
    for key, kind in (("metrics", dict), ("parents", list), ("data", dict), ("params", dict)):
        if key in card and card[key] is not None and not isinstance(card[key], kind):
            raise ZooError(f"{where}: '{key}' must be a JSON {'object' if kind is dict else 'list'}")
    for split, m in (card.get("metrics") or {}).items():
        if isinstance(m, dict):
            for k in ("accuracy", "macro_f1", "ece"):
                if m.get(k) is not None:
                    v.number(m[k], f"{where}: 'metrics.{split}.{k}'", low=0, high=1)


def read_card(folder: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Load and validate a folder's card; with ``verify`` also check every file's sha256.

    Refuses (with :class:`ZooError`) folders without a card (never finished), cards of another
    schema, and folders whose files were changed, removed or replaced since the card was written.
    """
    folder = Path(folder)
    path = folder / CARD
    if not folder.is_dir():
        raise ZooError(f"{folder}: no such folder")
    if not os.path.lexists(path):
        raise ZooError(f"{folder}: incomplete artifact folder (no {CARD}; the stage that writes it did not finish)")
    card = read_json_strict(path)
    validate_card(card, folder)
    if verify:
        verify_files(folder, card)
    return card


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a zoo artifact")


def read_json_strict(path: Path) -> Any:
    """JSON of a regular file within the size limit; NaN/Infinity literals are refused."""
    from zoo.safeio import MAX_JSON_BYTES, read_text

    try:
        return json.loads(read_text(path, MAX_JSON_BYTES), parse_constant=_no_constant)
    except ZooError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ZooError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    except OSError as exc:
        raise ZooError(f"{path}: cannot read ({exc.strerror or exc})") from None


def verify_files(folder: Path, card: dict[str, Any]) -> None:
    for rel, expected in card["files"].items():
        target = safe_join(folder, rel)
        if not target.is_file():
            raise ZooError(f"{folder}: file '{rel}' listed in the card is missing")
        actual = sha256_file(target)
        if actual != expected:
            raise ZooError(f"{folder}: file '{rel}' was modified after the card was written (sha256 mismatch)")


def card_sha256(folder: str | os.PathLike) -> str:
    """Identity of a complete folder as it is now: the hash of its card (which hashes every file).

    It changes whenever the folder is evaluated again; children pin parents by :func:`card_identity`."""
    return sha256_file(Path(folder) / CARD)


EVALUATION_DIRS = ("eval/", "probs/")  # what `zoo evaluate` adds to or rewrites in a complete folder


def card_identity(card: dict[str, Any]) -> str:
    """Identity of what a folder *is*, not of what was later measured with it.

    The sha256 of its (verified) card without the evaluation record: the ``metrics`` and the files
    under ``eval/`` and ``probs/``, which ``zoo evaluate`` and the shift suite add to a complete
    folder. Why: an ensemble pins its members, and pinning them by :func:`card_sha256` turned
    evaluating a member after its ensemble was built into "member changed", although nothing the
    ensemble uses had. Weights, configuration, lineage, training record and every other file are
    in it, so a retrained, swapped or edited member is still refused. (Combiners keep their own
    copy of the member probabilities they were fitted on.)
    """
    kept = {k: v for k, v in card.items() if k != "metrics"}
    kept["files"] = {rel: d for rel, d in card["files"].items() if not rel.startswith(EVALUATION_DIRS)}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def parameter_count(card: dict[str, Any]) -> int | None:
    """A run card's weight count. Cards store it as ``parameter_count`` (``params`` holds the builder's
    hyper-parameters); cards written before that rename call it ``parameters``, so both are read."""
    value = card.get("parameter_count", card.get("parameters"))
    return int(value) if value is not None else None
