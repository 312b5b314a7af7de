"""What this process is training at this moment, for the progress line. Layer: bottom (no
losstune import).

The training callbacks write it at every epoch (a few assignments); the terminal's display
reads it when it redraws, at its own pace, never from the storage. So a long training (a
thousand epochs of one design) shows its epochs going by instead of a silent progress bar.
"""

from __future__ import annotations

import time

_now: dict[str, float | int | str] = {}


def epoch(designs: int, index: int, epochs: int) -> None:
    """A training of ``designs`` designs together (1: alone) starts epoch ``index`` (0-based)
    of ``epochs``."""
    if index == 0 or _now.get("designs") != designs:
        _now.update(designs=designs, started=time.perf_counter())
    _now.update(epoch=index, epochs=epochs)


def clear() -> None:
    _now.clear()


def describe() -> str:
    """"training 8 designs together: epoch 3 of 1000, 0.4 s per epoch", or "" when idle."""
    if not _now:
        return ""
    designs, index, epochs = int(_now["designs"]), int(_now["epoch"]), int(_now["epochs"])
    what = "1 design" if designs == 1 else f"{designs} designs together"
    text = f"training {what}: epoch {index + 1} of {epochs}"
    if index:
        text += f", {(time.perf_counter() - float(_now['started'])) / index:.2g} s per epoch"
    return text


__all__ = ["clear", "describe", "epoch"]
