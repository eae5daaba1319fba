"""Per-queue job counts by state, kept with atomic adds so they never cause conflicts."""

from __future__ import annotations

import struct

from keyspace.layout import QueueKeys, queue_keys
from keyspace.protocol import ReadView, Transaction
from quick.jobs import COUNTED_STATES, JobState

__all__ = ["bump", "move", "read_counts"]

_ONE = struct.pack("<q", 1)
_MINUS_ONE = struct.pack("<q", -1)


def bump(tr: Transaction, keys: QueueKeys, state: JobState, delta: int = 1) -> None:
    """Add ``delta`` to the queue's count of ``state``."""
    param = _ONE if delta == 1 else _MINUS_ONE if delta == -1 else struct.pack("<q", delta)
    tr.add(keys.counter(state.value), param)


def move(tr: Transaction, keys: QueueKeys, old: JobState | None, new: JobState | None) -> None:
    """Count one job leaving ``old`` and entering ``new`` (None = not counted)."""
    if old is new:
        return
    if old in COUNTED_STATES:
        bump(tr, keys, old, -1)
    if new in COUNTED_STATES:
        bump(tr, keys, new, 1)


def read_counts(view: ReadView, queue: str) -> dict[str, int]:
    """``{state: count}`` for every counted state of ``queue`` (zeros included)."""
    keys = queue_keys(queue)
    counts = {state.value: 0 for state in COUNTED_STATES}
    for key, value in view.get_range(*keys.counters_range()):
        (state,) = keys.space["n"].unpack(key)
        counts[state] = struct.unpack("<q", value)[0]
    return counts
