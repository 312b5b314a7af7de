"""Stopping a search cleanly on Ctrl-C or SIGTERM.

The first signal only sets :data:`STOP`: the running trial ends after its current group of
batches (``training.steps_per_execution``, 64 by default) and is recorded as FAIL with the
reason "interrupted"; no new trial starts, completed trials stay. Raising
KeyboardInterrupt straight from the signal handler could land inside a storage transaction and
leave the SQLite write lock held. A second signal raises KeyboardInterrupt at once.

Layer: foundation.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

STOP = threading.Event()
INTERRUPTED = "interrupted by the user"  # the ``error`` of a trial the user stopped


class TrialInterrupted(Exception):
    """The user asked to stop while this trial was training."""


def _handler(signum: int, frame: Any) -> None:  # noqa: ARG001
    if STOP.is_set():
        raise KeyboardInterrupt
    STOP.set()


def install() -> dict[int, Any]:
    """Handle SIGINT and SIGTERM; returns the previous handlers for :func:`restore`.

    SIGINT is set explicitly: a process started in the background by a shell inherits an
    ignored SIGINT, and Ctrl-C / ``kill -INT`` would then do nothing.
    """
    STOP.clear()
    return {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore(previous: dict[int, Any]) -> None:
    """The handlers :func:`install` found; but while a stop is under way, not a signal's
    default action (SIGTERM's: death by the signal): a second SIGTERM while the stopped search
    winds down and the process exits still ends it in one line with status 130."""
    for sig, handler in previous.items():
        if STOP.is_set() and handler == signal.SIG_DFL:
            continue
        signal.signal(sig, handler)
