"""What this process is training at this moment, for the progress line. Layer: bottom (no
losstune import).

The training callbacks write it at every epoch (a few assignments); the terminal's display
reads it when it redraws, at its own pace, never from the storage. So a long training (a
thousand epochs of one design) shows its epochs going by instead of a silent progress bar.

Layer: foundation.
"""

from __future__ import annotations

import time

# One dict, replaced whole (never changed in place): the display thread reads whichever is
# there, consistent, while training writes the next.
_now: dict[str, float | int] = {}


def epoch(designs: int, index: int, epochs: int) -> None:
    """A training of ``designs`` designs together (1: alone) starts epoch ``index`` (0-based)
    of ``epochs``."""
    global _now
    before = _now
    started = (before["started"] if before and index and before["designs"] == designs
               else time.perf_counter())
    _now = {"designs": designs, "epoch": index, "epochs": epochs, "started": started}


def clear() -> None:
    global _now
    _now = {}


def describe() -> str:
    """"training 8 designs together: epoch 3 of 1000, 0.4 s per epoch", or "" when idle."""
    now = _now
    if not now:
        return ""
    designs, index, epochs = int(now["designs"]), int(now["epoch"]), int(now["epochs"])
    what = "1 design" if designs == 1 else f"{designs} designs together"
    text = f"training {what}: epoch {index + 1} of {epochs}"
    if index:
        text += f", {(time.perf_counter() - float(now['started'])) / index:.2g} s per epoch"
    return text


__all__ = ["clear", "describe", "epoch"]
