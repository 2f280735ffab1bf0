"""The ``zoo`` command: one subcommand per stage, each a thin wrapper over a Python function.

User errors (:class:`zoo.errors.ZooError`) print one line and exit with code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from zoo.errors import ZooError


def build_parser() -> argparse.ArgumentParser:
    from zoo import __version__
    from zoo.commands import COMMAND_MODULES

    parser = argparse.ArgumentParser(
        prog="zoo",
        description="Blood-cell classification model zoo: train members, ensemble, distill, export to ONNX, benchmark.",
        epilog="Run `zoo COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"zoo.commands.{name}").register(sub)
    return parser


def _bytes_safe_stdio() -> None:
    """File names that are not valid UTF-8 print as their original bytes instead of crashing."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape" if stream is sys.stdout else "backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _bytes_safe_stdio()
    parser = build_parser()  # imports no TensorFlow: the quiet settings below still apply
    args = parser.parse_args(argv)
    from zoo.console import quiet_native_logs, restore

    quiet_native_logs(verbose=args.verbose)
    try:
        return _dispatch(args)
    finally:
        restore()


def _dispatch(args) -> int:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "zoo: interrupted (completed epochs and stages are kept; rerun with --resume / the same command)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
