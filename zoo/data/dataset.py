"""The in-memory dataset every loader returns.

Loaders decode everything once into uint8 arrays at the requested size: PBC-sized data
(~14k images) fits easily in memory at 64–128 px, and one representation means every stage
(training, evaluation, curation, export calibration) sees identical pixels.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.errors import ZooError

SPLITS = ("train", "val", "test")

_STRATIFIED = re.compile(r"stratified\(seed=(\d+), val=([\d.]+), test=([\d.]+)\)")


def stratified_origin(seed: int, val_fraction: float, test_fraction: float) -> str:
    """How a :class:`Dataset` whose loader made a seeded stratified split records it (``split_origin``, also part of
    its fingerprint); :func:`split_kwargs` reads it back."""
    return f"stratified(seed={seed}, val={val_fraction}, test={test_fraction})"


def split_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    """The ``load_dataset`` keywords that make again the split a card's ``data`` section records (its
    ``split_origin``): a stage reloading a member's data sees the member's own val and test images. None for
    splits the data itself gave."""
    m = _STRATIFIED.fullmatch(str((data or {}).get("split_origin", "")))
    if not m:
        return {}
    return {"seed": int(m.group(1)), "val_fraction": float(m.group(2)), "test_fraction": float(m.group(3))}


@dataclass
class Split:
    """Images ``(N, H, W, 3) uint8`` with integer labels ``(N,)`` and, when known, source files."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ZooError(f"split images must be (N, H, W, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if len(self.images) != len(self.labels):
            raise ZooError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.files is not None and len(self.files) != len(self.labels):
            raise ZooError(f"{len(self.files)} file names but {len(self.labels)} labels")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class Dataset:
    """A named set of splits sharing one ordered list of class names.

    ``fingerprint`` hashes the source content and labels (not the resize), so two artifacts
    trained on the same data share it whatever image size they used. ``skipped`` lists files a
    loader could not use, with the reason, for the report.
    """

    source: str
    class_names: list[str]
    splits: dict[str, Split]
    fingerprint: str
    image_size: int
    split_origin: str = "given"  # "given" (from the data) or stratified_origin(…)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, split in self.splits.items():
            if len(split) and (split.labels.min() < 0 or split.labels.max() >= len(self.class_names)):
                raise ZooError(f"{self.source}: split '{name}' has labels outside 0..{len(self.class_names) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        if name not in self.splits or len(self.splits[name]) == 0:
            have = [k for k, v in self.splits.items() if len(v)]
            raise ZooError(f"{self.source}: no '{name}' split (available: {', '.join(have) or 'none'})")
        return self.splits[name]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description recorded in every card."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "image_size": self.image_size,
            "split_origin": self.split_origin,
            "classes": list(self.class_names),
            "counts": {k: v.counts(self.num_classes) for k, v in self.splits.items()},
            "skipped_files": len(self.skipped),
            "skipped": [dict(s) for s in self.skipped],  # the per-file report: {"file", "reason"}
        }


class Fingerprint:
    """Incremental sha256 over (split, item, label) records; order-sensitive by design."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, *parts: str | bytes | int) -> None:
        for part in parts:
            if isinstance(part, int):
                part = str(part)
            if isinstance(part, str):
                part = part.encode("utf-8", "surrogateescape")
            self._h.update(len(part).to_bytes(8, "little"))
            self._h.update(part)

    def hexdigest(self) -> str:
        return self._h.hexdigest()[:16]
