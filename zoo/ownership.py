"""Where a command may write: the one ownership rule, the one publish-a-folder helper, the writer lock.

Why one place: ``zoo export --out`` once deleted a user's folder because each command judged its
``--out`` on its own. The rule, for every command that writes a folder:

- the folder does not exist, or is empty: write;
- it holds a complete artifact (a valid ``card.json``) of the *same* kind, and every file in it is
  one the card lists: replace it, but only when asked (``--force``);
- it is an interrupted folder of the zoo's own making, of the same kind (a marker file, or a
  training checkpoint): continue or restart it (only commands that resume, e.g. ``zoo train``);
- anything else is refused with one line: a non-empty folder without a card, a folder of
  another kind, a card listing fewer files than the folder holds, a path that contains (or lies
  inside) the command's source artifact, a file where a folder is wanted, a path under a file.

Folders are assembled under a hidden sibling ``.NAME.partial-<pid>`` (holding a marker file) and
renamed into place at the end, so ``NAME`` is absent or complete; a partial folder left by a
killed command is recognised by its name *and* marker and removed by the next writer of ``NAME``.
One writer per output: :func:`claim` holds a ``filelock`` lock ``.NAME.lock`` beside the folder
(never inside the artifact) for the whole command, so a second writer refuses with one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError

log = logging.getLogger(__name__)

MARKER = ".zoo-owner"  # inside a folder the zoo is still writing: {"kind": ..., "pid": ...}
PARTIAL = ".partial-"
# Working state a finished artifact may still hold besides the files its card lists.
_UNLISTED_OK = {"card.json", "logs", "checkpoint", MARKER}


def _label(out: Path, flag: str) -> str:
    return f"{flag} {out}" if flag else str(out)


def _kinds(kind: str | Sequence[str]) -> tuple[str, ...]:
    return (kind,) if isinstance(kind, str) else tuple(kind)


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as the zoo's own, unfinished work of ``kind`` (hidden: never hashed into a card)."""
    from zoo.artifacts import write_text

    write_text(folder / MARKER, json.dumps({"kind": kind, "pid": os.getpid()}) + "\n")


def marker_kind(folder: Path) -> str | None:
    """The kind recorded by :func:`write_marker`, or None when absent or unreadable."""
    from zoo.safeio import read_json

    try:
        data = read_json(folder / MARKER, limit=4096)
    except (ZooError, OSError):
        return None
    return data.get("kind") if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def _own_incomplete(out: Path, kinds: tuple[str, ...]) -> bool:
    if marker_kind(out) in kinds:
        return True
    # Folders from before the marker: a training checkpoint, a pipeline's recorded config.
    if {"member", "student"} & set(kinds) and (out / "checkpoint" / "state.json").is_file():
        return True
    if "pipeline" in kinds and (out / "config.json").is_file():
        from zoo.safeio import read_json

        try:
            cfg = read_json(out / "config.json")
        except ZooError:
            return False
        return isinstance(cfg, dict) and {"output", "members", "data"} <= set(cfg)
    return False


def _unlisted(out: Path, card: dict) -> list[str]:
    """Files in ``out`` that its card does not list (a user's notes dropped into an artifact, …)."""
    listed = set(card.get("files", {}))
    extra = []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if rel.parts[0] in _UNLISTED_OK or (p.is_dir() and not p.is_symlink()):
            continue
        if rel.as_posix() not in listed:
            extra.append(rel.as_posix())
    return extra


def check_target(
    out: str | os.PathLike,
    kind: str | Sequence[str],
    *,
    force: bool = False,
    sources: Iterable[str | os.PathLike] = (),
    resumable: bool = False,
    force_flag: str | None = "--force",
    flag: str = "--out",
) -> str:
    """Apply the ownership rule to ``out``; returns ``new | empty | replace | incomplete`` or raises ZooError."""
    from zoo.artifacts import read_card

    out = Path(out)
    kinds = _kinds(kind)
    label = _label(out, flag)
    for anc in out.absolute().parents:  # the closest existing ancestor must be a folder
        if os.path.lexists(anc):
            if not anc.is_dir():
                raise ZooError(f"{label}: '{anc}' is a file, so nothing can be created under it")
            break
    if os.path.lexists(out) and not out.exists():
        raise ZooError(f"{label}: is a dangling symbolic link; refusing to write through it")
    if out.exists() and not out.is_dir():
        raise ZooError(f"{label}: is a file, not a folder; refusing to replace it (give a folder path)")
    target = out.resolve()
    for src in sources:
        s = Path(src).resolve()
        if target == s or target in s.parents:
            raise ZooError(
                f"{label}: contains the source {src}; writing there would replace it (choose a folder outside it)"
            )
        if s.is_dir() and s in target.parents:
            raise ZooError(f"{label}: lies inside the source {src}; choose a folder outside it")
    if not out.exists():
        return "new"
    try:
        entries = list(out.iterdir())
    except OSError as exc:
        raise ZooError(f"{label}: cannot list the folder ({exc.strerror or exc})") from None
    if not entries:
        return "empty"
    if os.path.lexists(out / "card.json"):
        try:
            card = read_card(out, verify=False)
        except ZooError as exc:
            raise ZooError(
                f"{label}: holds a card.json that is not a valid zoo card ({exc}); refusing to replace it"
            ) from None
        if card["kind"] not in kinds:
            raise ZooError(
                f"{label}: holds a complete '{card['kind']}' artifact, not a '{kinds[0]}'; refusing to replace it "
                "(choose another folder)"
            )
        if not force:
            how = f"pass {force_flag} to replace it" if force_flag else "choose another folder or delete it yourself"
            noun = "run" if card["kind"] in ("member", "student") else card["kind"]
            raise ZooError(f"{label}: a complete artifact already exists there ({noun} '{card.get('name')}'); {how}")
        extra = _unlisted(out, card)
        if extra:
            shown = ", ".join(extra[:3]) + (f" (+{len(extra) - 3} more)" if len(extra) > 3 else "")
            raise ZooError(
                f"{label}: holds file(s) its card does not list ({shown}); refusing to delete them with {force_flag}"
            )
        return "replace"
    if resumable and _own_incomplete(out, kinds):
        return "incomplete"
    raise ZooError(
        f"{label}: exists, is not empty and holds files no zoo command finished (no card.json); refusing to "
        "write into it (choose a new or empty folder)"
    )


# ----------------------------------------------------------------------------- partial folders
def partial_name(out: Path, pid: int | None = None) -> Path:
    return out.parent / f".{out.name}{PARTIAL}{pid or os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(out: Path) -> list[Path]:
    """Remove ``.NAME.partial-<pid>`` siblings of ``out`` that hold the zoo's marker and whose process is gone."""
    removed = []
    prefix = f".{out.name}{PARTIAL}"
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        tail = p.name[len(prefix) :]
        if not (p.name.startswith(prefix) and tail.isdigit() and p.is_dir() and not p.is_symlink()):
            continue
        if marker_kind(p) is None or (int(tail) != os.getpid() and _alive(int(tail))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed %s, left by an interrupted command", p)
        removed.append(p)
    return removed


# ----------------------------------------------------------------------------- the lock
@contextlib.contextmanager
def writer_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold ``.NAME.lock`` beside ``out`` (filelock, non-blocking); a second writer gets one line."""
    from filelock import FileLock, Timeout

    out = Path(out).absolute()
    path = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=0)
        lock.acquire()
    except Timeout:
        raise ZooError(
            f"{out}: another zoo command is writing this folder right now (lock {path.name}); "
            "wait for it to finish or choose another --out"
        ) from None
    except OSError as exc:
        raise ZooError(f"{out}: cannot create the folder or its lock ({exc.strerror or exc})") from None
    try:
        yield path
    finally:
        lock.release()
        # Leave nothing behind. (A writer that opened the file in the instant before this unlink could
        # lock the orphaned inode while a third creates a new one; a microsecond window, accepted.)
        with contextlib.suppress(OSError):
            path.unlink()


# ----------------------------------------------------------------------------- claim + publish
@dataclass
class Claim:
    """The right to write ``out`` (held while the ``claim`` block runs)."""

    out: Path
    kinds: tuple[str, ...]
    status: str
    force: bool
    sources: tuple[str, ...]
    resumable: bool
    force_flag: str | None
    flag: str

    def recheck(self) -> str:
        return check_target(
            self.out,
            self.kinds,
            force=self.force,
            sources=self.sources,
            resumable=self.resumable,
            force_flag=self.force_flag,
            flag=self.flag,
        )

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh hidden sibling to assemble the folder in; renamed onto ``out`` if the block succeeds."""
        tmp = partial_name(self.out)
        if tmp.exists():
            shutil.rmtree(tmp)  # this process's own earlier attempt
        tmp.mkdir()  # mode 0777 & ~umask, like every other folder the zoo makes
        write_marker(tmp, self.kinds[0])
        try:
            yield tmp
            (tmp / MARKER).unlink()
            self.publish(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def publish(self, tmp: Path) -> Path:
        """Rename ``tmp`` onto ``out``: replaces nothing but an empty folder or (``force``) the same kind."""
        status = self.recheck()
        if status == "replace":
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
            os.replace(self.out, old)
            os.replace(tmp, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:  # new, or empty (rename(2) replaces an empty folder and fails on a non-empty one)
            os.replace(tmp, self.out)
        return self.out


@contextlib.contextmanager
def claim(
    out: str | os.PathLike,
    kind: str | Sequence[str],
    *,
    force: bool = False,
    sources: Iterable[str | os.PathLike] = (),
    resumable: bool = False,
    force_flag: str | None = "--force",
    flag: str = "--out",
) -> Iterator[Claim]:
    """Check ``out`` against the ownership rule, lock it, clean stale partials; yield a :class:`Claim`."""
    out = Path(out).absolute()
    args = dict(
        force=force, sources=tuple(str(s) for s in sources), resumable=resumable, force_flag=force_flag, flag=flag
    )
    check_target(out, kind, **args)  # refuse before creating anything, even the lock file
    with writer_lock(out):
        status = check_target(out, kind, **args)
        clean_partials(out)
        yield Claim(out, _kinds(kind), status, **args)


def check_file_target(out: str | os.PathLike, *, force: bool = False, flag: str = "--out") -> Path:
    """A file a command will write (``zoo predict --out``): not a folder, not under a file, not special,
    and an existing file only with ``force``."""
    out = Path(out)
    label = _label(out, flag)
    for anc in out.absolute().parents:
        if os.path.lexists(anc):
            if not anc.is_dir():
                raise ZooError(f"{label}: '{anc}' is a file, so nothing can be created under it")
            break
    if out.is_dir():
        raise ZooError(f"{label}: is a folder; give a file name (e.g. {out / 'predictions.csv'})")
    if os.path.lexists(out) and not out.is_file():
        from zoo.safeio import kind_of

        what = kind_of(os.stat(out).st_mode) if out.exists() else "a dangling symbolic link"
        raise ZooError(f"{label}: is {what}, not a regular file; refusing to write to it")
    if out.exists() and not force:
        raise ZooError(f"{label}: file exists; pass --force to overwrite it")
    return out
