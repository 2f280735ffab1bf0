"""CLI subcommand modules. Each exposes ``register(subparsers)``; ``zoo.cli`` imports them in order."""

COMMAND_MODULES = [
    "train",
    "evaluate",
    "list",
    "run",
    "ensemble",
    "export",
    "data",
    "bench",
    "report",
    "explain",
]
