"""The backends' native log lines, kept off a command's stderr. Layer: bottom (no losstune
import).

TensorFlow's C++ runtime writes to file descriptor 2 directly. ``TF_CPP_MIN_LOG_LEVEL`` hides
most of it, but not everything: on TensorFlow 2.2x, ``port.cc``'s "oneDNN custom operations
are on" and absl's "All log messages before absl::InitializeLog() is called are written to
STDERR" are printed at import whatever the level says, and grappler's "Error in PredictCost()
for the op" is an ERROR-level line about its own cost model that changes nothing in the
results. Python cannot catch them (they bypass ``sys.stderr``), so they broke every one-line
error and every clean log, 4 lines per process and 12 with 3 workers.

:func:`silence` runs before any backend is imported, in the command-line process (its
worker processes inherit the same descriptor): it sets ``TF_CPP_MIN_LOG_LEVEL`` (unless the user
set it) and puts a filter on descriptor 2, a pipe whose reader passes every line on unchanged
except the lines of :data:`NOISE`. ``losstune --debug`` leaves stderr alone.

Written by hand: no library filters a file descriptor (``contextlib.redirect_stderr`` swaps the
Python object only, and absl's own settings take effect after these lines are printed).

Layer: foundation.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import re
import select
import threading

# One pattern per line of noise, anchored at the start of the line.
NOISE = re.compile(
    r"(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ (port|cpu_feature_guard|cuda_\w+)\.cc:\d+\]"
    r"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] Unable to register cu\w+ factory"
    r"|E\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] Error in PredictCost\(\) for the op"
    r"|To enable the following instructions: .* rebuild TensorFlow)")

_installed: list = []  # the original stderr descriptor and a file on it, once filtering
_closing = threading.Event()  # set at exit: the reader drains what is there, then stops
# How long the reader waits for more once the process is exiting. Not until the pipe's end:
# other processes may hold it (multiprocessing's resource tracker keeps a copy of stderr).
_DRAIN_S = 0.2


def is_noise(line: str) -> bool:
    return NOISE.match(line) is not None


def silence() -> None:
    """Quiet the backends' native logging for this process and its children (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _installed:
        return
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no descriptor 2 (a daemon): nothing to filter
        return
    _installed.append(original)
    # A crash (segfault, abort) ends the process before the reader can pass anything on:
    # Python's fatal-error report goes to the real stderr directly.
    _installed.append(os.fdopen(original, "w", closefd=False))
    faulthandler.enable(file=_installed[1])
    reader = threading.Thread(target=_pass_on, args=(read_end, original), daemon=True,
                              name="losstune-stderr-filter")
    reader.start()
    atexit.register(_restore, reader)


def _pass_on(read_end: int, original: int) -> None:
    """Copy whole lines from the pipe to the real stderr, dropping the noise."""
    pending = b""
    while True:
        ready, _, _ = select.select([read_end], [], [], _DRAIN_S if _closing.is_set() else 1.0)
        if not ready:
            if _closing.is_set():
                break
            continue
        try:
            chunk = os.read(read_end, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = [line + b"\n" for line in lines
               if not is_noise(line.decode("utf-8", "replace"))]
        if out:
            _write_all(original, b"".join(out))
    if pending and not is_noise(pending.decode("utf-8", "replace")):
        _write_all(original, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except OSError:  # the terminal went away: nothing more to show
            return


def _restore(reader: threading.Thread) -> None:
    """At exit: the real stderr back on descriptor 2, and what the pipe holds passed on
    (processes that still hold the pipe cannot keep the exit waiting)."""
    import sys

    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_installed[0], 2)  # closes this process's end of the pipe
    _closing.set()
    reader.join(timeout=2.0)


__all__ = ["NOISE", "is_noise", "silence"]
