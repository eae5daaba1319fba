"""What each dashboard page shows, read through the library's own query functions.

Each function takes the database (or a transaction) and returns plain values for a
template; none writes, and none holds a transaction for more than a few round trips. The
overview reads its window of queues in one snapshot so its counts agree with each other.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from keyspace.protocol import Database, Transaction
from quick.corruption import CorruptRecord
from quick.counters import queue_depth
from quick.inspection import (
    count_finished_windows,
    list_queues,
    oldest_ready_ms,
)

__all__ = [
    "QUEUE_WINDOW",
    "OLDEST_READERS",
    "FINISHED_CAP",
    "QueueRow",
    "Overview",
    "read_overview",
    "page_after",
    "decoded",
]

#: Queues read per overview page. The pointer records are ordered by name and nothing
#: indexes depth, so "deepest first" is within this window; a million tenants load as
#: pages of this many (each a few reads per queue, one snapshot).
QUEUE_WINDOW = 200

#: The most finished-index entries counted for a throughput figure; past it the page
#: says "at least", so a busy hour costs a bounded scan.
FINISHED_CAP = 10_000

#: Queues whose oldest ready time the overview reads at once, each in its own short
#: transaction: enough to overlap a remote cluster's round trips for a window of 200,
#: few enough not to crowd the server's request threads.
OLDEST_READERS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRow:
    """One queue on the overview: its counts, depth and the oldest visible job's time."""

    queue: str
    counts: dict[str, int]
    depth: int
    oldest_ready_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    """One overview page: a window of queues deepest first, totals and throughput."""

    rows: list[QueueRow]
    totals: dict[str, int]
    oldest_ready_ms: int | None
    finished_minute: int
    finished_hour: int
    next_after: str | None


def read_overview(
    db: Database | Transaction, now: int, *, after: str | None = None, window: int = QUEUE_WINDOW
) -> Overview:
    """The overview: ``window`` queues by name after ``after``, sorted deepest first.

    The window's pointers, counts and throughput are read in one snapshot (three round
    trips), so they agree with each other. Each queue's oldest ready time is a skip
    scan of a few reads; given a database, those run in short transactions of their
    own, :data:`OLDEST_READERS` at a time, rather than hundreds of reads in the
    snapshot's one (which a remote cluster would end at 5 seconds). A queue its counts
    show without work is not scanned.
    """

    def body(tr: Transaction) -> tuple[list[dict[str, Any]], list[int]]:
        queues = list_queues(tr, limit=window, after=after)
        windows = [now - 60_000, now - 3_600_000]
        return queues, count_finished_windows(tr, windows, limit=FINISHED_CAP)

    def oldest(view: Database | Transaction, row: dict[str, Any]) -> int | None:
        return oldest_ready_ms(view, row["queue"], now) if queue_depth(row["counts"]) else None

    if isinstance(db, Transaction):
        queues, (minute, hour) = body(db)
        times = [oldest(db, row) for row in queues]
    else:
        queues, (minute, hour) = db.transact(body)
        with ThreadPoolExecutor(OLDEST_READERS) as pool:
            times = list(pool.map(lambda row: oldest(db, row), queues))
    rows = [
        QueueRow(
            queue=row["queue"],
            counts=row["counts"],
            depth=queue_depth(row["counts"]),
            oldest_ready_ms=at,
        )
        for row, at in zip(queues, times, strict=True)
    ]
    rows.sort(key=lambda row: (-row.depth, row.queue))
    totals: dict[str, int] = {}
    for row in rows:
        for state, count in row.counts.items():
            totals[state] = totals.get(state, 0) + count
    return Overview(
        rows=rows,
        totals=totals,
        oldest_ready_ms=min((r.oldest_ready_ms for r in rows if r.oldest_ready_ms), default=None),
        finished_minute=minute,
        finished_hour=hour,
        next_after=page_after([row["queue"] for row in queues], window),
    )


def page_after(names: list[str], window: int) -> str | None:
    """The cursor of the next page: the last name read, if the page was full."""
    return names[-1] if len(names) >= window and names else None


def decoded(item: Any) -> bool:
    """True for a record that decoded (templates test this, not the class)."""
    return not isinstance(item, CorruptRecord)
