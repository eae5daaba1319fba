"""The conflict log of a sqlite store: table ``wlog``, one row per committed transaction.

Theory of operation
-------------------
Each row holds a commit version and that transaction's write-conflict points and ranges
(msgpack). A committing transaction that read at version ``v`` checks every row newer
than ``v`` against its read ranges: any overlap is a conflict (1020) and nothing is
written. When nothing intervened that is one indexed read of ``wlog``.

Why optimistic concurrency with conflict ranges rather than serialized writers:
serialized writers (one ``BEGIN IMMEDIATE`` held from a transaction's first read)
would make every transaction wait for every other, including producers that never
touch a consumer's keys; QuiCK's whole design depends on those not conflicting.
With conflict ranges two transactions conflict exactly when FoundationDB would
make them conflict, and the write lock is held only for the short apply step.
Measured (``scripts/bench_engine.py``): see the README for the ratios.

Rows older than :data:`RETENTION_US` are pruned every :data:`PRUNE_EVERY` commits; a
transaction whose read version predates a pruned row fails with transaction_too_old (1007).
"""

from __future__ import annotations

import bisect
import sqlite3

import msgpack

from keyspace.errors import StorageError
from keyspace.ryw import RangeSet

__all__ = ["RETENTION_US", "PRUNE_EVERY", "latest_version", "check", "append", "prune"]

#: How long conflict history is kept: twice a transaction's five-second lifetime.
RETENTION_US = 10_000_000
#: Commits between prunes: pruning is a range delete, cheap but not free.
PRUNE_EVERY = 512


def latest_version(conn: sqlite3.Connection) -> int:
    """The newest commit version in ``conn``'s view of the store (0 for a new store)."""
    row = conn.execute("SELECT max(version) FROM wlog").fetchone()
    return row[0] or 0


def check(conn: sqlite3.Connection, read_version: int, read_ranges: RangeSet) -> None:
    """Raise 1020 if a commit after ``read_version`` wrote into ``read_ranges``.

    Raises:
        StorageError: 1020 on a conflict; 1007 when the history since ``read_version``
            has been pruned.
    """
    pruned = conn.execute("SELECT value FROM meta WHERE name='pruned_through'").fetchone()[0]
    if read_version < pruned:
        raise StorageError(1007, "read version is older than the retained conflict history")
    begins, ends = read_ranges.begins, read_ranges.ends
    for (blob,) in conn.execute("SELECT ranges FROM wlog WHERE version > ?", (read_version,)):
        points, ranges = msgpack.unpackb(blob)
        for key in points:
            i = bisect.bisect_right(begins, key) - 1
            if i >= 0 and key < ends[i]:
                raise StorageError(1020)
        for j in range(0, len(ranges), 2):
            if read_ranges.intersects(ranges[j], ranges[j + 1]):
                raise StorageError(1020)


def append(
    conn: sqlite3.Connection,
    version: int | None,
    floor: int,
    points: list[bytes],
    ranges: list[bytes],
) -> int:
    """Append a commit's row and return its version.

    Args:
        version: the version, or None to take ``max(newest + 1, floor)`` in the same
            statement that appends.
        floor: the least version allowed when ``version`` is None (the clock).
        points: written keys.
        ranges: cleared ranges, flattened as ``begin, end, begin, end, ...``.
    """
    blob = msgpack.packb((points, ranges))
    if version is None:
        (version,) = conn.execute(
            "INSERT INTO wlog(version, ranges) "
            "SELECT max(coalesce(max(version), 0) + 1, ?), ? FROM wlog RETURNING version",
            (floor, blob),
        ).fetchone()
    else:
        conn.execute("INSERT INTO wlog(version, ranges) VALUES(?, ?)", (version, blob))
    assert version is not None
    return version


def prune(conn: sqlite3.Connection, below: int) -> None:
    """Delete rows older than ``below`` (always keeping the newest) and record how far."""
    row = conn.execute(
        "SELECT max(version) FROM wlog WHERE version < ? "
        "AND version < (SELECT max(version) FROM wlog)",
        (below,),
    ).fetchone()
    if row[0] is None:
        return
    conn.execute("DELETE FROM wlog WHERE version <= ?", (row[0],))
    conn.execute("UPDATE meta SET value = max(value, ?) WHERE name='pruned_through'", (row[0],))
