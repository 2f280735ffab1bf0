"""The zoo's version, from one source: the installed distribution's metadata (``pyproject.toml``).

Why: a hard-coded ``__version__`` drifts from ``pyproject.toml``, and a wrong distribution name
made every export record ``0+unknown``. A source checkout that is not installed falls back to
reading ``pyproject.toml`` beside the package, so the version is still written once.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

DISTRIBUTION = "bloodcell-zoo"
UNKNOWN = "0+unknown"


def version() -> str:
    try:
        return md.version(DISTRIBUTION)
    except md.PackageNotFoundError:
        pass
    import tomllib

    try:
        project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))[
            "project"
        ]
    except (OSError, ValueError, KeyError):
        return UNKNOWN
    return str(project.get("version", UNKNOWN)) if project.get("name") == DISTRIBUTION else UNKNOWN
