"""An in-process memo for pure functions of image arrays, keyed by the arrays' content.

Why: one ``zoo run`` shows the same image sets to several models. The shift suite corrupts the same
stratified subsample with the same seed for every artifact at an input size, so the vote, the stack, the
student and the 96 px members all read the same cell sets; the magnification adapter measures each set's
ruler (:mod:`zoo.magnification`) and the ensembles run the same members on them
(:meth:`ensemble.folder.Ensemble.member_probs`). Both are pure functions of the pixels, so each is worked
out once and looked up afterwards: the results are the same arrays, only sooner.

Keys hash the bytes, dtype and shape of every array with BLAKE2b (about 1 GB/s: a fraction of a percent of
what a model or the ruler spends on the same pixels) together with the caller's other parameters. Values
are copied in and out, so a caller that changes what it got back cannot change what the next caller gets.
The cache holds at most ``max_entries`` values and ``max_bytes`` of them, dropping the least recently used
(a value larger than ``max_bytes`` is returned, never kept); it lives as long as the process.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np


class ContentCache:
    """Least-recently-used memo of ``np.ndarray`` results keyed by :meth:`key`."""

    def __init__(self, max_entries: int, max_bytes: int = 256 * 2**20) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"max_entries and max_bytes must be >= 1, got {max_entries}, {max_bytes}")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._values: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(*parts: Hashable | np.ndarray) -> str:
        """A digest of ``parts``: arrays by dtype, shape and bytes; anything else by ``repr``."""
        h = hashlib.blake2b(digest_size=20)
        for part in parts:
            if isinstance(part, np.ndarray):
                a = np.ascontiguousarray(part)
                h.update(f"array {a.dtype.str} {a.shape}|".encode())
                h.update(memoryview(a).cast("B"))
            else:
                h.update(f"{type(part).__name__} {part!r}|".encode())
        return h.hexdigest()

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The value stored under ``key``, computed (and stored) on the first call."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return self._values[key].copy()
            self.misses += 1
        value = np.asarray(compute())
        if value.nbytes > self.max_bytes:
            return value
        with self._lock:
            if key not in self._values:
                self._values[key] = value.copy()
                self._bytes += value.nbytes
            self._values.move_to_end(key)
            while len(self._values) > self.max_entries or self._bytes > self.max_bytes:
                self._bytes -= self._values.popitem(last=False)[1].nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._values)
