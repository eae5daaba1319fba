"""What each dashboard page shows, read through the library's own query functions.

Each function takes the database (or a transaction) and returns plain values for a
template; none writes, and none holds a transaction longer than one page's reads. The
overview reads its window of queues in one snapshot so its counts agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyspace.protocol import Database, Transaction
from quick.corruption import CorruptRecord
from quick.counters import queue_depth
from quick.inspection import (
    count_finished,
    list_queues,
    oldest_ready_ms,
)

__all__ = [
    "QUEUE_WINDOW",
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
    """The overview: ``window`` queues by name after ``after``, sorted deepest first."""

    def body(tr: Transaction) -> Overview:
        queues = list_queues(tr, limit=window, after=after)
        rows = [
            QueueRow(
                queue=row["queue"],
                counts=row["counts"],
                depth=queue_depth(row["counts"]),
                oldest_ready_ms=oldest_ready_ms(tr, row["queue"], now),
            )
            for row in queues
        ]
        rows.sort(key=lambda row: (-row.depth, row.queue))
        totals: dict[str, int] = {}
        for row in rows:
            for state, count in row.counts.items():
                totals[state] = totals.get(state, 0) + count
        oldest = min((r.oldest_ready_ms for r in rows if r.oldest_ready_ms), default=None)
        return Overview(
            rows=rows,
            totals=totals,
            oldest_ready_ms=oldest,
            finished_minute=count_finished(tr, now - 60_000, limit=FINISHED_CAP),
            finished_hour=count_finished(tr, now - 3_600_000, limit=FINISHED_CAP),
            next_after=page_after([row["queue"] for row in queues], window),
        )

    if isinstance(db, Transaction):
        return body(db)
    return db.transact(body)


def page_after(names: list[str], window: int) -> str | None:
    """The cursor of the next page: the last name read, if the page was full."""
    return names[-1] if len(names) >= window and names else None


def decoded(item: Any) -> bool:
    """True for a record that decoded (templates test this, not the class)."""
    return not isinstance(item, CorruptRecord)
