"""Jobs finished per minute, overall and per queue: the dashboard's throughput chart.

Theory of operation
-------------------
The writer of job records (:func:`quick.records.finish_job`: completed, discarded and
cancelled jobs) adds one to two little-endian int64 counters per finished job, in the
transaction that finishes it: ``("fin", minute_ms)`` for every queue and
``("fin", minute_ms, queue)`` for its queue, ``minute_ms`` the start of the minute.
They are atomic adds: settlements never read them, so they conflict with nothing, and
a settlement batch's adds to one key are one write. Reading a chart is one ``get_many``
of sixty keys. Deriving the chart from the finished-job index (``("done", ms, id)``)
instead would cost nothing at settlement, but a chart would range-read every job
finished in the hour (54 million rows at 15,000 jobs a second), and that index does
not say the queue.

Counters older than :data:`KEEP_MS` are cleared by the periodic purge of finished jobs
(:func:`quick.purge_finished` calls :func:`purge_counts`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from keyspace.layout import FINISHED_PER_MINUTE
from keyspace.protocol import ReadView, Transaction
from quick.counters import Tally, add_count, decode_count

__all__ = [
    "MINUTE_MS",
    "KEEP_MS",
    "MinuteCount",
    "count_finished",
    "finished_per_minute",
    "purge_counts",
]

MINUTE_MS = 60_000
#: How long per-minute counts are kept: the chart's hour, and one more minute.
KEEP_MS = 61 * MINUTE_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class MinuteCount:
    """Jobs finished in the minute starting at ``minute_ms``."""

    minute_ms: int
    finished: int


def count_finished(tr: Transaction, queue: str, now: int, tally: Tally | None = None) -> None:
    """Count one job of ``queue`` finished at ``now`` (called by the writer of job records;
    through ``tally`` when the caller batches counters)."""
    minute = now - now % MINUTE_MS
    for key in (_minute_key(minute), _queue_minute_key(minute, queue)):
        if tally is None:
            add_count(tr, key, 1)
        else:
            tally.add(key, 1)


@functools.lru_cache(maxsize=64)
def _minute_key(minute: int) -> bytes:
    """Every queue's counter of a minute (cached apart from the per-queue ones, which
    miss their cache when more queues than it holds finish jobs within a minute)."""
    return FINISHED_PER_MINUTE.pack((minute,))


@functools.lru_cache(maxsize=4096)
def _queue_minute_key(minute: int, queue: str) -> bytes:
    """``queue``'s counter of a minute (cached: packed per job)."""
    return FINISHED_PER_MINUTE.pack((minute, queue))


def finished_per_minute(
    view: ReadView | Transaction, now: int, *, queue: str | None = None, minutes: int = 60
) -> list[MinuteCount]:
    """Jobs finished in each of the last ``minutes`` minutes up to ``now`` (the current,
    partial minute last), in ``queue`` or (None) in every queue. A counter that does not
    decode reads as zero."""
    current = now - now % MINUTE_MS
    starts = [current - MINUTE_MS * i for i in range(minutes - 1, -1, -1)]
    tail = () if queue is None else (queue,)
    keys = [FINISHED_PER_MINUTE.pack((start, *tail)) for start in starts]
    get_many = getattr(view, "get_many", None)
    values = get_many(keys) if get_many is not None else [view.get(key) for key in keys]
    return [
        MinuteCount(
            minute_ms=start,
            finished=max(0, decode_count(v)) if v is not None and len(v) == 8 else 0,
        )
        for start, v in zip(starts, values, strict=True)
    ]


def purge_counts(tr: Transaction, before: int) -> None:
    """Forget the counts of minutes that ended before ``before``.

    Writes only when there is something to forget: the purge runs every second in every
    worker, and a blind clear made each of those a commit (a write to the sqlite
    engine's log, which wakes every watch of every worker sharing the store). The look
    is a snapshot read, so the purge conflicts with no settlement, as the blind clear
    did not.
    """
    first = before - before % MINUTE_MS
    begin, end = FINISHED_PER_MINUTE.range()[0], FINISHED_PER_MINUTE.pack((first,))
    if tr.snapshot.get_range(begin, end, limit=1):
        tr.clear_range(begin, end)
