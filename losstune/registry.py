"""A record registered for one ``with`` block: the loss-family catalog and the task registry
both offer it (tests and notebooks register a family or a task for a while).

Layer: foundation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Record = TypeVar("Record")


@contextmanager
def for_block(register: Callable[[Record], Any], unregister: Callable[[str], None],
              record: Record) -> Iterator[Record]:
    """``register(record)`` now, ``unregister(record.name)`` when the block ends, however it
    ends."""
    register(record)
    try:
        yield record
    finally:
        unregister(record.name)  # type: ignore[attr-defined]
