"""Read only regular files, and only up to a size limit that is checked before reading.

Why: opening a FIFO blocks until someone writes to it, a character device (``/dev/zero``) never
ends, and a 40 GB file named ``x.jpg`` exhausts memory. Every reader of user-supplied or
artifact files (image folders, ``zoo predict`` inputs and models, ``.npz`` archives, cards,
``ensemble.json``, ONNX and Keras files, configs) goes through :func:`check_regular` or
:func:`read_bytes`: ``os.stat`` first (following symlinks), then an ``O_NONBLOCK`` open that is
``fstat``-ed again, so a file swapped for a FIFO between the two checks cannot hang the reader.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from zoo.errors import ZooError

MiB = 1 << 20
GiB = 1 << 30
# Limits per kind of file: far above any real one, far below what would exhaust memory.
MAX_IMAGE_BYTES = 256 * MiB
MAX_JSON_BYTES = 64 * MiB  # card.json, ensemble.json, checkpoint state, configs
MAX_ARRAY_BYTES = 16 * GiB  # .npz datasets, .npy probabilities
MAX_MODEL_BYTES = 16 * GiB  # .onnx (+ external data), .keras, .weights.h5


class NotReadable(ZooError, OSError):
    """A path that is not a regular file, or is above its size limit; ``reason`` omits the path.

    Also an ``OSError``, so every reader that reports unreadable files reports these too.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _check(path: str | os.PathLike, st: os.stat_result, limit: int | None) -> os.stat_result:
    if not stat.S_ISREG(st.st_mode):
        raise NotReadable(path, f"is {kind_of(st.st_mode)}, not a regular file; not read")
    if limit is not None and st.st_size > limit:
        raise NotReadable(
            path, f"file is {st.st_size:,} bytes, above the {limit:,}-byte limit for this kind of file; not read"
        )
    return st


def check_regular(path: str | os.PathLike, limit: int | None = None) -> os.stat_result:
    """``os.stat(path)`` if it is a regular file within ``limit`` bytes, else :class:`NotReadable`.

    ``OSError`` (missing, no permission, symlink loop) propagates unchanged for the caller to word.
    """
    return _check(path, os.stat(path), limit)


def read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; never blocks on a special file."""
    check_regular(path, limit)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = _check(path, os.fstat(fd), limit)  # the file opened is the one checked
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(st.st_size + 1 if limit is None else min(st.st_size, limit) + 1)
    finally:
        os.close(fd)
    if limit is not None and len(data) > limit:  # grew while being read
        raise NotReadable(path, f"file grew above the {limit:,}-byte limit while being read; not read")
    return data


def read_text(path: str | os.PathLike, limit: int = MAX_JSON_BYTES) -> str:
    return read_bytes(path, limit).decode("utf-8")


def read_json(path: str | os.PathLike, limit: int = MAX_JSON_BYTES) -> Any:
    """Parsed JSON of a regular file; bad JSON or text is a :class:`ZooError` naming the file."""
    try:
        return json.loads(read_text(path, limit))
    except FileNotFoundError:
        raise ZooError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ZooError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    except OSError as exc:
        raise ZooError(f"{path}: cannot read ({exc.strerror or exc})") from None


def is_regular(path: str | os.PathLike) -> bool:
    """True for a regular file (after symlinks); False for anything else, missing or unreadable."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


__all__ = [
    "MAX_ARRAY_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_JSON_BYTES",
    "MAX_MODEL_BYTES",
    "NotReadable",
    "check_regular",
    "is_regular",
    "read_bytes",
    "read_json",
    "read_text",
]
