"""The one exception type for user errors.

The CLI catches :class:`ZooError` and prints one clear line (exit code 2); anything else is a
bug and keeps its traceback. Raise it for bad input (files, configs, arguments), never for
internal invariants.
"""


class ZooError(Exception):
    """A problem the user can fix: a bad path, file, config value or argument."""
