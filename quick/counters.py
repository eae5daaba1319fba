"""Per-queue job counts by state, kept with atomic adds so they never cause conflicts.

A batch operation (a claim of many jobs, a group settlement) moves many jobs between
the same few states; a :class:`Tally` sums those moves and writes one atomic add per
(queue, state) at the end, as FoundationDB's client would coalesce them, rather than
one per job.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping

from keyspace.layout import QueueKeys, describe, queue_keys
from keyspace.protocol import ReadView, Transaction
from quick.jobs import COUNTED_STATES, JobState

__all__ = [
    "WORK_STATES",
    "Tally",
    "bump",
    "clear_zeros",
    "decode_count",
    "encode_count",
    "move",
    "queue_depth",
    "read_counts",
]

log = logging.getLogger("quick.store")

#: The states whose sum is a queue's depth: work still to do (dead letters are counted
#: and shown, but are not work).
WORK_STATES = (JobState.READY.value, JobState.SCHEDULED.value, JobState.LEASED.value)


def encode_count(count: int) -> bytes:
    """A counter's stored form: a little-endian signed 64-bit integer, as FoundationDB's
    atomic add reads and writes it."""
    return struct.pack("<q", count)


def decode_count(value: bytes) -> int:
    """A stored counter's value; ``struct.error`` when it is not 8 bytes."""
    (count,) = struct.unpack("<q", value)
    return int(count)


def queue_depth(counts: Mapping[str, int]) -> int:
    """A queue's depth from its counts by state: its ready, scheduled and leased jobs."""
    return sum(counts.get(state, 0) for state in WORK_STATES)


_ONE = encode_count(1)
_MINUS_ONE = encode_count(-1)


def bump(tr: Transaction, keys: QueueKeys, state: JobState, delta: int = 1) -> None:
    """Add ``delta`` to the queue's count of ``state``."""
    param = _ONE if delta == 1 else _MINUS_ONE if delta == -1 else encode_count(delta)
    tr.add(keys.counter(state.value), param)


_ZERO = encode_count(0)


def clear_zeros(tr: Transaction, keys: QueueKeys) -> None:
    """Clear each counter of the queue that is zero when this commits (FoundationDB's
    compare-and-clear: an atomic op, no read, no conflict), so an emptied queue leaves no
    counter behind; a count that is not zero by then (a job enqueued meanwhile) stays."""
    for state in COUNTED_STATES:
        tr.compare_and_clear(keys.counter(state.value), _ZERO)


def move(tr: Transaction, keys: QueueKeys, old: JobState | None, new: JobState | None) -> None:
    """Count one job leaving ``old`` and entering ``new`` (None = not counted)."""
    if old is new:
        return
    if old in COUNTED_STATES:
        bump(tr, keys, old, -1)
    if new in COUNTED_STATES:
        bump(tr, keys, new, 1)


class Tally:
    """Counter moves summed within one transaction body; :meth:`flush` writes them.

    Make one per run of the body (a retry starts from a fresh tally).
    """

    __slots__ = ("_deltas",)

    def __init__(self) -> None:
        self._deltas: dict[tuple[str, JobState], int] = {}

    def move(self, keys: QueueKeys, old: JobState | None, new: JobState | None) -> None:
        """Count one job of ``keys.queue`` leaving ``old`` and entering ``new``."""
        if old is new:
            return
        deltas = self._deltas
        if old in COUNTED_STATES:
            assert old is not None
            deltas[keys.queue, old] = deltas.get((keys.queue, old), 0) - 1
        if new in COUNTED_STATES:
            assert new is not None
            deltas[keys.queue, new] = deltas.get((keys.queue, new), 0) + 1

    def pending(self, queue: str, state: JobState) -> int:
        """The not yet flushed change to the count of ``state`` in ``queue``."""
        return self._deltas.get((queue, state), 0)

    def flush(self, tr: Transaction) -> None:
        """Write one atomic add per (queue, state) that changed, and start over."""
        for (queue, state), delta in self._deltas.items():
            if delta:
                bump(tr, queue_keys(queue), state, delta)
        self._deltas.clear()


def read_counts(view: ReadView, queue: str) -> dict[str, int]:
    """``{state: count}`` for every counted state of ``queue`` (zeros included).

    A counter that is not an 8-byte integer (or whose key does not unpack to a state)
    is left out and named in a warning; ``quick check --deep --repair`` rewrites it.
    """
    keys = queue_keys(queue)
    counts = {state.value: 0 for state in COUNTED_STATES}
    for key, value in view.get_range(*keys.counters_range()):
        try:
            (state,) = keys.space["n"].unpack(key)
            count = decode_count(value)
        except (ValueError, TypeError, struct.error) as error:
            log.warning("corrupt counter %s: %s; left out", describe(key), error)
            continue
        if isinstance(state, str):
            counts[state] = count
    return counts
