"""Command-line arguments that several commands share, defined once so a recipe copied from one command
to another parses the same way (``zoo train``, ``zoo ensemble``, ``zoo distill``)."""

from __future__ import annotations

import json
from typing import Any

from zoo.errors import ZooError


def add_learning_rate(parser, default: float, dest: str) -> None:
    """``--lr`` / ``--learning-rate``: one flag under both spellings in every command that trains (train, distill)."""
    parser.add_argument(
        "--lr",
        "--learning-rate",
        dest=dest,
        type=float,
        default=default,
        help=f"peak learning rate (default {default})",
    )


def json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    """The JSON object a flag such as ``--params`` holds; ``None`` when the flag was not given or is blank.

    Builder and learner parameters are keyword arguments, so anything but an object (a list, a number)
    is refused here, in one line, rather than failing later inside the builder.
    """
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ZooError(f"{flag}: not valid JSON ({exc}); e.g. {flag} '{{\"dropout\": 0.3}}'") from None
    if not isinstance(value, dict):
        raise ZooError(f"{flag} must be a JSON object, e.g. '{{\"dropout\": 0.3}}', got {type(value).__name__}")
    return value
