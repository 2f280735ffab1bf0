"""Progress on long work: one bar for loading, predicting and benchmarking over many items (tqdm on stderr),
and how verbose Keras is while it trains."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _shown() -> bool:
    """Progress bars are on unless ``ZOO_PROGRESS=0`` (tests, benchmarks, logs meant for reading)."""
    return os.environ.get("ZOO_PROGRESS", "1") != "0"


def progress(items: Iterable[T], total: int | None = None, desc: str = "", min_items: int = 200) -> Iterable[T]:
    """Wrap ``items`` in a bar when there are enough of them and ``ZOO_PROGRESS`` is not 0."""
    if not _shown() or (total is not None and total < min_items):
        return items
    return tqdm(items, total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)


def keras_verbosity(stream=None) -> int:
    """``verbose`` for Keras ``fit``: its step-by-step bar on a terminal, one line per epoch anywhere else.

    Keras 3 redraws its bar in place whenever Python's ``posix`` module is loaded, so on Linux and macOS a
    redirected log kept every redraw: 2.8 MB of carriage-return frames for one 103-minute ``pbc-cpu`` run.
    ``ZOO_PROGRESS=0`` asks for the epoch lines on a terminal too.
    """
    stream = sys.stdout if stream is None else stream
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    return 1 if interactive and _shown() else 2
