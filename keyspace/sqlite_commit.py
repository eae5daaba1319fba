"""Committing a sqlite transaction: conflict check, then the buffered writes, under the writer lock.

Theory of operation
-------------------
Commit takes the writer lock (:class:`keyspace.sqlite_pool.WriterLock`). When the
transaction's connection still holds its read snapshot the write is first tried in place:
SQLite accepts it only if nothing has committed since the snapshot, so there can be no
conflict. Otherwise SQLite refuses at once (SQLITE_BUSY_SNAPSHOT) and the commit opens
``BEGIN IMMEDIATE`` and checks the conflict log (:mod:`keyspace.sqlite_conflicts`). With
no conflict it folds the mutation log into final values (:func:`apply`), writes them with
a few statements, stamps versionstamped keys and values, appends its ``wlog`` row and
commits.

Versions are microseconds since the epoch, kept strictly increasing
(``max(previous + 1, now)``), so they advance about 1,000,000 per second as
FoundationDB's do and versionstamps (8-byte version, 2-byte batch order 0) are
strictly increasing across every process sharing the file.
"""

from __future__ import annotations

import sqlite3
import time

from keyspace import sqlite_conflicts
from keyspace.atomic import apply as apply_atomic
from keyspace.limits import fill_versionstamp, versionstamp_template
from keyspace.ryw import MutationKind, WriteBuffer
from keyspace.sqlite_pool import Pool, WriterLock
from keyspace.sqlite_reads import stored
from keyspace.sqlite_state import TransactionState

__all__ = ["apply_commit", "apply", "now_us", "stamp"]

_SQLITE_BUSY_SNAPSHOT = 517


def now_us() -> int:
    """The clock, in microseconds since the epoch (a version's floor)."""
    return time.time_ns() // 1000


def stamp(version: int) -> bytes:
    """The 10-byte versionstamp of a commit at ``version``."""
    return version.to_bytes(8, "big") + b"\x00\x00"


def apply_commit(pool: Pool, tr: TransactionState, conn: sqlite3.Connection, reading: bool) -> int:
    """Check conflicts and apply ``tr``'s writes under the writer lock; return the version.

    Args:
        reading: ``conn`` still holds ``tr``'s read snapshot, so the write is tried in place.

    Raises:
        StorageError: 1020 on a conflict, 1007 when the conflict history is gone, 1021
            when SQLite refuses the COMMIT.
    """
    with WriterLock(pool, conn, begin=not reading) as lock:
        if reading:
            assert tr.read_version is not None
            try:
                return _write(pool, conn, tr, tr.read_version)
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != _SQLITE_BUSY_SNAPSHOT:
                    raise
                conn.execute("ROLLBACK")
                lock.begin()
        if tr.read_ranges and tr.read_version is not None:
            latest = sqlite_conflicts.latest_version(conn)
            if latest > tr.read_version:
                sqlite_conflicts.check(conn, tr.read_version, tr.read_ranges)
            return _write(pool, conn, tr, latest)
        return _write(pool, conn, tr, None)


def _write(pool: Pool, conn: sqlite3.Connection, tr: TransactionState, latest: int | None) -> int:
    """Apply the log and append the wlog row; ``latest`` None = look it up as needed."""
    if latest is None and tr.buffer.stamped:
        latest = sqlite_conflicts.latest_version(conn)
    version = None if latest is None else max(latest + 1, now_us())
    points, ranges = apply(conn, tr.buffer, stamp(version or 0))
    for begin, end in tr.extra_write_ranges:
        ranges.extend((begin, end))
    version = sqlite_conflicts.append(conn, version, now_us(), points, ranges)
    if pool.count_commit() % sqlite_conflicts.PRUNE_EVERY == 0:
        sqlite_conflicts.prune(conn, version - sqlite_conflicts.RETENTION_US)
    return version


def apply(
    conn: sqlite3.Connection, buffer: WriteBuffer, versionstamp: bytes
) -> tuple[list[bytes], list[bytes]]:
    """Apply the mutation log; return the write-conflict points and ranges.

    The log is folded first into each key's final value (None: cleared) and the ranges
    cleared, then written with a few statements: range deletes, one DELETE and one
    upsert batch. That is the log's effect in order because a range clear removes the
    keys written before it from the fold, and keys written after it stay. Atomic ops
    read their stored operands in one query and chain on the fold.
    """
    points: list[bytes] = []
    ranges: list[bytes] = []
    final: dict[bytes, bytes | None] = {}
    cleared: list[tuple[bytes, bytes]] = []
    log = buffer.log
    operands = stored(conn, [m.key for m in log if m.kind is MutationKind.ATOMIC])
    for m in log:
        kind = m.kind
        if kind is MutationKind.SET:
            final[m.key] = m.value
            points.append(m.key)
        elif kind is MutationKind.CLEAR:
            final[m.key] = None
            points.append(m.key)
        elif kind is MutationKind.CLEAR_RANGE:
            begin, end = m.key, m.end
            for key in [k for k in final if begin <= k < end]:
                del final[key]
            cleared.append((begin, end))
            ranges.extend((begin, end))
        elif kind is MutationKind.ATOMIC:
            assert m.op is not None
            key = m.key
            if key in final:
                current = final[key]
            elif cleared and any(begin <= key < end for begin, end in cleared):
                current = None
            else:
                current = operands.get(key)
            final[key] = apply_atomic(m.op, current, m.value)
            points.append(key)
        elif kind is MutationKind.VERSIONSTAMPED_KEY:
            body, offset = versionstamp_template(m.key)
            final[fill_versionstamp(body, offset, versionstamp)] = m.value
        else:
            body, offset = versionstamp_template(m.value)
            final[m.key] = fill_versionstamp(body, offset, versionstamp)
            points.append(m.key)
    # A versionstamped key's write conflict is every key it could have become, as
    # FoundationDB's ReadYourWritesTransaction::atomicOp adds it (getVersionstampKeyRange),
    # not the key it became: the buffer's unreadable ranges are exactly those.
    for begin, end in zip(buffer.unreadable.begins, buffer.unreadable.ends, strict=True):
        ranges.extend((begin, end))
    for begin, end in cleared:
        conn.execute("DELETE FROM kv WHERE k >= ? AND k < ?", (begin, end))
    gone = [(key,) for key, value in final.items() if value is None]
    if gone:
        conn.executemany("DELETE FROM kv WHERE k = ?", gone)
    kept = [(key, value) for key, value in final.items() if value is not None]
    if kept:
        conn.executemany("INSERT OR REPLACE INTO kv(k, v) VALUES(?, ?)", kept)
    return points, ranges
