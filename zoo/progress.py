"""One progress bar for loading, predicting and benchmarking over many items (tqdm on stderr)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", min_items: int = 200) -> Iterable[T]:
    """Wrap ``items`` in a bar when there are enough of them and ``ZOO_PROGRESS`` is not 0."""
    if os.environ.get("ZOO_PROGRESS", "1") == "0" or (total is not None and total < min_items):
        return items
    return tqdm(items, total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
