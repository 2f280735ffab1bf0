"""Class-folder trees like the public PBC dataset.

Two layouts: ``ROOT/<class>/*.jpg`` (no split: a stratified, seeded split is made and
recorded) or ``ROOT/{train,val,test}/<class>/*.jpg``. Class names are the folder names,
sorted, so the order is the same on every machine.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from zoo.data.dataset import SPLITS, Dataset, Fingerprint, Split, stratified_origin
from zoo.data.images import IMAGE_EXTENSIONS, BadImage, decode
from zoo.data.splitting import stratified_split
from zoo.errors import ZooError
from zoo.progress import progress
from zoo.safeio import MAX_IMAGE_BYTES, NotReadable, read_bytes

log = logging.getLogger(__name__)


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for p in dirs:
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogate escapes
            raise ZooError(
                f"{os.fsencode(p)!r}: folder name is not valid UTF-8; class names go into cards, plots and "
                "ONNX metadata, so rename the folder (e.g. `convmv -f latin1 -t utf8`)"
            ) from None
    return dirs


def _image_files(class_dir: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                files.append(Path(dirpath) / f)
    return files


def _scan(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: [files]}} for either layout."""
    subdirs = {p.name.lower(): p for p in _class_dirs(root)}
    if "train" in subdirs:
        extra = sorted(set(subdirs) - set(SPLITS))
        if extra:
            raise ZooError(f"{root}: has split folders and also {extra}; expected only {list(SPLITS)}")
        tree = {s: {c.name: _image_files(c) for c in _class_dirs(subdirs[s])} for s in SPLITS if s in subdirs}
    else:
        tree = {"all": {c.name: _image_files(c) for c in _class_dirs(root)}}
    for split, classes in tree.items():
        if not classes:
            raise ZooError(f"{root}: no class folders found" + (f" in '{split}'" if split != "all" else ""))
        for cls, files in classes.items():
            if not files:
                where = root / cls if split == "all" else root / split / cls
                raise ZooError(f"{where}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return tree


def load_folder(
    root: str | os.PathLike,
    image_size: int,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    skip_bad: bool = False,
    workers: int = 4,
) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise ZooError(f"{root}: no such folder")
    tree = _scan(root)
    class_names = sorted({c for classes in tree.values() for c in classes})
    if "train" in tree:
        missing = [c for c in class_names if c not in tree["train"]]
        if missing:
            raise ZooError(f"{root}: class(es) {missing} have no folder in 'train'")
        for split, classes in tree.items():
            absent = [c for c in class_names if c not in classes]
            if absent and split != "train":
                log.warning("%s: split '%s' has no images of class(es) %s", root, split, absent)
    index = {c: i for i, c in enumerate(class_names)}
    items = [(split, f, index[c]) for split, classes in tree.items() for c, files in classes.items() for f in files]

    def read(item):
        split, path, label = item
        try:
            data = read_bytes(path, MAX_IMAGE_BYTES)  # regular files only (a FIFO would block), size checked first
        except NotReadable as exc:
            return item, None, None, exc.reason
        except OSError as exc:
            return item, None, None, f"cannot read file ({exc.strerror or exc})"
        try:
            return item, data, decode(data, image_size, str(path)), None
        except BadImage as exc:
            return item, data, None, str(exc)

    fp = Fingerprint()
    arrays: dict[str, list] = {}
    skipped: list[dict[str, str]] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for (split, path, label), data, pixels, error in progress(
            pool.map(read, items), total=len(items), desc=f"loading {root.name}"
        ):
            rel = path.relative_to(root).as_posix()
            if error is not None:
                if not skip_bad:
                    raise ZooError(f"{path}: {error}")
                skipped.append({"file": str(path), "reason": error})
                continue
            fp.add(split, rel, label, _sha(data))
            arrays.setdefault(split, []).append((pixels, label, str(path)))
    if skipped:
        log.warning("skipped %d unreadable file(s) under %s (listed in the card's data.skipped)", len(skipped), root)
        kept = {label for rows in arrays.values() for _, label, _ in rows}
        empty = [c for c in class_names if index[c] not in kept]
        if empty:
            raise ZooError(f"{root}: class(es) {empty} have no usable images left after skipping unreadable files")

    def to_split(rows) -> Split:
        if not rows:
            return Split(np.zeros((0, image_size, image_size, 3), np.uint8), np.zeros(0, np.int64), [])
        return Split(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows]), [r[2] for r in rows])

    if "all" in arrays:
        whole = to_split(arrays["all"])
        splits = stratified_split(whole, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
        origin = stratified_origin(seed, val_fraction, test_fraction)
        fp.add("split", origin)
    else:
        splits = {s: to_split(arrays.get(s, [])) for s in tree}
        origin = "given"
    if len(splits.get("train", [])) == 0:
        raise ZooError(f"{root}: no usable training images")
    return Dataset(str(root), class_names, splits, fp.hexdigest(), image_size, origin, skipped)


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
