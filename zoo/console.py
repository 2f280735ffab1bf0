"""A quiet terminal: TensorFlow's native start-up chatter does not reach the user unless ``--verbose``.

Why a file-descriptor filter: TensorFlow's C++ runtime logs through absl *before* Python logging
exists and ignores ``TF_CPP_MIN_LOG_LEVEL`` for its first lines ("All log messages before
absl::InitializeLog() …", oneDNN notices, "Could not find cuda drivers"), and a CPU machine gets a
``cuInit`` error line on the first op. Those lines are written straight to file descriptor 2, so
the only place to drop them is there: :func:`quiet_native_logs` points fd 2 at a pipe and a
thread copies everything through except lines in absl's log format (``I0000 00:00:… file.cc:31]``).
Progress bars, warnings, tracebacks and the zoo's own log lines pass unchanged, also partial lines
(tqdm's ``\\r`` updates) as soon as they arrive. ``TF_CPP_MIN_LOG_LEVEL`` is still set, so lines
TensorFlow itself can suppress are never produced.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

# absl / TensorFlow C++ log line: severity letter, MMDD, time, thread id, file:line]
_NATIVE_LINE = re.compile(rb"^[IWE]\d{4} [\d:.]+ +\d+ [^\s:]+:\d+\] ")
_NATIVE_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def is_native_log_line(line: bytes) -> bool:
    """True for a TensorFlow/absl C++ log line (fatal lines are never dropped: they explain a crash)."""
    line = line.lstrip(b"\r")
    return bool(_NATIVE_LINE.match(line)) or line.startswith(_NATIVE_PREAMBLE)


def _could_become_native(partial: bytes) -> bool:
    """A line still being written that may turn out to be a native log line (held back until complete)."""
    partial = partial.lstrip(b"\r")
    return partial in (b"I", b"W", b"E") or bool(re.match(rb"[IWE]\d", partial)) or _NATIVE_PREAMBLE.startswith(partial)


class _Filter:
    """fd 2 → pipe → this thread → the original stderr, minus native log lines."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        self.thread = threading.Thread(target=self._pump, name="zoo-stderr-filter", daemon=True)
        self.thread.start()

    def _emit(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.saved, data) :]

    def _pump(self) -> None:
        pending = b""
        while True:
            chunk = os.read(self.read, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not is_native_log_line(line))
            if pending and not _could_become_native(pending):
                out, pending = out + pending, b""
            if out:
                self._emit(out)
        if pending and not is_native_log_line(pending):
            self._emit(pending)
        os.close(self.read)

    def close(self) -> None:
        """Give fd 2 back and wait until everything written so far has been copied through."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.saved, 2)  # the pipe's last writer is gone: the pump reads EOF and ends
        self.thread.join(timeout=5)
        os.close(self.saved)


class _NoRetracingNote(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function …> triggered tf.function retracing" note.

    The zoo scores many Keras models in one process (each member, its saved copy, every ensemble member
    on every shift-suite set), each traced once by design; TensorFlow counts those first traces across
    models and calls it retracing. Nothing a user can act on, so the quiet terminal leaves it out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_NOTE = _NoRetracingNote()
_active: _Filter | None = None


def quiet_native_logs(verbose: bool = False) -> None:
    """Silence TensorFlow's native chatter and its retracing note, unless ``verbose``.

    Must run before TensorFlow is imported (the environment variables are read at import).
    """
    global _active
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").addFilter(_RETRACING_NOTE)  # adding it twice keeps one
    if _active is None and os.environ.get("ZOO_STDERR_FILTER", "1") != "0":
        try:
            _active = _Filter()
        except OSError:  # no fd 2 (a daemon) or no pipes: nothing to filter
            _active = None


def restore() -> None:
    """Undo :func:`quiet_native_logs` (the CLI calls this before it exits)."""
    global _active
    logging.getLogger("tensorflow").removeFilter(_RETRACING_NOTE)
    if _active is not None:
        _active.close()
        _active = None
