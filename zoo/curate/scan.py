"""Which images a curation pass looks at: records of (file, class, split), from a folder or a Dataset.

Folder layouts are the loader's (``ROOT/<class>/…`` or ``ROOT/{train,val,test}/<class>/…``,
via the same helpers as :mod:`zoo.data.folders`), but scanning here is tolerant: an empty
class folder or a stray non-image file is something to *report*, not a reason to stop.
Sources that are not folders (``*.npz``, ``bloodmnist``, ``synthetic``) go through
:func:`zoo.data.load_dataset` and are curated from their pixels only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.errors import ZooError


@dataclass
class Record:
    """One image: ``path`` on disk (None for array sources), display name ``rel``, class and split.

    A Dataset whose files are on disk is curated from the files (original bytes and sizes) with
    the Dataset's own split assignment, so a loader-made stratified split is checked for leakage.
    """

    rel: str
    label: str
    split: str
    path: str | None = None
    index: int | None = None  # position in the Dataset split, for array sources


@dataclass
class Scan:
    source: str
    root: Path | None
    class_names: list[str]
    records: list[Record]
    layout: str  # "splits" | "flat" (folder) | "dataset" (files, Dataset's splits) | "arrays"
    empty_classes: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] | None = None  # split -> uint8 images, for array sources


def scan(source, image_size: int = 64) -> Scan:
    """A folder path, another ``load_dataset`` source string, or a loaded ``zoo.data.Dataset``."""
    from zoo.data import Dataset

    if isinstance(source, Dataset):
        return _from_dataset(source)
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return _scan_folder(path)
    from zoo.data import load_dataset

    return _from_dataset(load_dataset(str(source), image_size, skip_bad=True))


def _scan_folder(root: Path) -> Scan:
    from zoo.data.dataset import SPLITS
    from zoo.data.folders import _class_dirs, _image_files
    from zoo.data.images import IMAGE_EXTENSIONS

    subdirs = {p.name.lower(): p for p in _class_dirs(root)}
    if "train" in subdirs or any(s in subdirs for s in SPLITS):
        layout = "splits"
        split_dirs = {s: subdirs[s] for s in SPLITS if s in subdirs}
    else:
        layout = "flat"
        split_dirs = {"all": root}
    records, empty, other = [], [], []
    classes: set[str] = set()
    for split, sdir in split_dirs.items():
        for cdir in _class_dirs(sdir):
            classes.add(cdir.name)
            files = _image_files(cdir)
            if not files:
                empty.append(cdir.relative_to(root).as_posix())
            for f in files:
                records.append(Record(f.relative_to(root).as_posix(), cdir.name, split, str(f)))
            for dirpath, _, names in os.walk(cdir):
                for n in names:
                    if not n.lower().endswith(IMAGE_EXTENSIONS):
                        other.append((Path(dirpath) / n).relative_to(root).as_posix())
    if not records:
        raise ZooError(
            f"{root}: no images found in class folders (expected ROOT/<class>/*.jpg or ROOT/train/<class>/*.jpg)"
        )
    return Scan(str(root), root, sorted(classes), records, layout, sorted(empty), sorted(other))


def _from_dataset(ds) -> Scan:
    records, arrays = [], {}
    for split, part in ds.splits.items():
        if len(part) == 0:
            continue
        files = part.files or [None] * len(part)
        on_disk = all(f is not None and os.path.isfile(f) for f in files)
        if not on_disk:
            arrays[split] = part.images
        for i, (label, f) in enumerate(zip(part.labels.tolist(), files)):
            rel = os.path.relpath(f, ds.source) if f and os.path.isdir(ds.source) else (f or f"{split}/{i}")
            records.append(Record(rel, ds.class_names[label], split, f if on_disk else None, None if on_disk else i))
    root = Path(ds.source) if os.path.isdir(ds.source) else None
    return Scan(
        ds.source, root, list(ds.class_names), records, "arrays" if arrays else "dataset", arrays=arrays or None
    )
