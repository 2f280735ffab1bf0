"""Describe the machine a benchmark ran on (named in every results file).

One implementation: ``export.bench.machine``, which ``zoo bench`` uses too. This module keeps
the import the scripts use (``from machine import …``) and adds the Python version.
"""

from __future__ import annotations

import platform

from export.bench.machine import conditions
from export.bench.machine import describe as _describe
from export.bench.machine import one_line as _one_line

__all__ = ["conditions", "describe", "one_line"]


def describe() -> dict:
    return {**_describe(), "python": platform.python_version()}


def one_line(m: dict | None = None) -> str:
    return _one_line(m or describe())
