"""Reads of a sqlite transaction, at its snapshot and through its write buffer.

Theory of operation
-------------------
A transaction's first read opens a SQLite read transaction (WAL mode), which pins a
consistent snapshot of the file; its read version is the newest commit version in that
snapshot. Every later read, snapshot or not, uses the same snapshot, so a transaction
sees one point in time plus its own buffered writes (:class:`keyspace.ryw.WriteBuffer`
answers first for keys it wrote). Stored values once read are cached for the
transaction, as FoundationDB's read-your-writes cache keeps them. A serializable read
adds what it covered to the transaction's read-conflict ranges; a snapshot read does not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from keyspace.errors import StorageError
from keyspace.limits import SYSTEM_PREFIX, check_point_key, check_range, require_bytes
from keyspace.protocol import KeyValue
from keyspace.sqlite_files import storage_error
from keyspace.sqlite_pool import Pool
from keyspace.sqlite_state import TransactionState

__all__ = [
    "Reader",
    "key_after",
    "prefix_end",
    "fetch",
    "query",
    "query_many",
    "read_committed",
    "scan",
    "stored",
]

#: Rows per page of a range read the write buffer merges into.
RANGE_PAGE = 256
#: Keys per ``SELECT ... IN (...)`` (under SQLite's 999-variable floor).
MANY_PAGE = 500
#: Ranges per ``SELECT ... UNION ALL ...`` (three variables each, under SQLite's floors of
#: 999 variables and 500 compound terms).
RANGES_PAGE = 300
#: SQLite's largest integer: a larger limit is no limit.
_SQLITE_MAX_INT = 2**63 - 1


def key_after(key: bytes) -> bytes:
    """The first key after ``key``."""
    return key + b"\x00"


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return SYSTEM_PREFIX
    return stripped[:-1] + bytes([stripped[-1] + 1])


def fetch(conn: sqlite3.Connection, key: bytes) -> bytes | None:
    """The stored value at ``key``."""
    row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
    return row[0] if row else None


def query(
    conn: sqlite3.Connection, begin: bytes, end: bytes, limit: int, reverse: bool
) -> list[KeyValue]:
    """Stored rows of [begin, end) in read order, at most ``limit`` (0: all)."""
    order = "DESC" if reverse else "ASC"
    return conn.execute(
        f"SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k {order} LIMIT ?",
        (begin, end, min(limit, _SQLITE_MAX_INT) or -1),
    ).fetchall()


def query_many(
    conn: sqlite3.Connection, ranges: Sequence[tuple[bytes, bytes, int]]
) -> list[list[KeyValue]]:
    """Stored rows of each forward ``(begin, end, limit)`` range, one statement per page of
    ranges (a ``UNION ALL`` of one limited subquery each)."""
    out: list[list[KeyValue]] = []
    for start in range(0, len(ranges), RANGES_PAGE):
        page = ranges[start : start + RANGES_PAGE]
        sql = " UNION ALL ".join(
            f"SELECT {i}, k, v FROM (SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?)"
            for i in range(len(page))
        )
        params = [x for b, e, n in page for x in (b, e, min(n, _SQLITE_MAX_INT) or -1)]
        rows: list[list[KeyValue]] = [[] for _ in page]
        for i, key, value in conn.execute(sql, params):
            rows[i].append((key, value))
        for found in rows:
            if len(found) > 1:
                found.sort()  # each subquery is ordered; sorting keeps that explicit
        out += rows
    return out


def scan(conn: sqlite3.Connection, begin: bytes, end: bytes, reverse: bool) -> Iterator[KeyValue]:
    """Stored rows of [begin, end) in read order, fetched a page at a time."""
    while begin < end:
        page = query(conn, begin, end, RANGE_PAGE, reverse)
        yield from page
        if len(page) < RANGE_PAGE:
            return
        if reverse:
            end = page[-1][0]
        else:
            begin = key_after(page[-1][0])


def stored(conn: sqlite3.Connection, keys: Sequence[bytes]) -> dict[bytes, bytes]:
    """The stored values of ``keys`` (absent ones left out), a page of keys per query."""
    found: dict[bytes, bytes] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), MANY_PAGE):
        page = unique[start : start + MANY_PAGE]
        marks = ",".join("?" * len(page))
        found.update(conn.execute(f"SELECT k, v FROM kv WHERE k IN ({marks})", page).fetchall())
    return found


def read_committed(pool: Pool, key: bytes) -> bytes | None:
    """The value last committed at ``key``, in one statement outside any transaction.

    A watch's re-read (:mod:`keyspace.watches`): it needs no read version, no conflict
    range and no retry loop, and a transaction would cost it several statements more.
    The rows are fetched to the end, so the statement's read snapshot ends with it.
    """
    conn = pool.acquire()
    try:
        rows = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchall()
    except sqlite3.Error as error:
        conn.close()
        raise storage_error(pool.path, error, 1037) from error
    pool.release(conn)
    return rows[0][0] if rows else None


class Reader:
    """Reads at the transaction's snapshot; ``conflicts`` says whether they add read ranges."""

    __slots__ = ("conflicts", "tr")

    def __init__(self, tr: TransactionState, conflicts: bool) -> None:
        self.tr = tr
        self.conflicts = conflicts

    def get(self, key: bytes) -> bytes | None:
        check_point_key(key)
        tr = self.tr
        if tr.read_version is None:
            tr.check_live()
            try:
                value, consulted = tr.buffer.read(key, tr.begin_read_at)
            except sqlite3.Error as error:
                raise storage_error(tr.db.path, error, 1037) from error
            if consulted and self.conflicts:
                tr.read_ranges.add(key, key_after(key))
            return value
        # The hot path (a point read after the first, most answered by the read cache),
        # written out: it runs several times per job a claim round leases.
        conn = tr.snapshot_conn()  # raises as check_live does, and past the lifetime
        needs_store, entry = tr.buffer.lookup(key)
        stored = None
        if needs_store:
            cache = tr.read_cache
            if key in cache:
                stored = cache[key]
            else:
                tr.db.latency.wait(tr.db.latency.read)
                try:
                    stored = cache[key] = fetch(conn, key)
                except sqlite3.Error as error:
                    raise storage_error(tr.db.path, error, 1037) from error
            if self.conflicts:
                tr.read_ranges.add(key, key_after(key))
        return stored if entry is None else entry.resolve(stored)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values at ``keys``: one SQL statement per page of keys the buffer cannot answer."""
        for key in keys:
            check_point_key(key)
        tr = self.tr
        conn = tr.snapshot_conn()
        cache = tr.read_cache
        wanted = [key for key in dict.fromkeys(keys) if key not in cache]
        if wanted:
            tr.db.latency.wait(tr.db.latency.read)  # one round trip for all the keys
        try:
            found = stored(conn, wanted)
        except sqlite3.Error as error:
            raise storage_error(tr.db.path, error, 1037) from error
        for key in wanted:
            cache[key] = found.get(key)
        out = []
        buffered = tr.buffer.read
        ranges = tr.read_ranges if self.conflicts else None
        for key in keys:
            value, consulted = buffered(key, cache.__getitem__)
            if consulted and ranges is not None:
                ranges.add(key, key_after(key))
            out.append(value)
        return out

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        check_range(begin, end)
        if limit < 0:
            raise StorageError(2006, "limit must not be negative")
        if begin >= end:
            return []
        tr = self.tr
        conn = tr.snapshot_conn()
        tr.db.latency.wait(tr.db.latency.read)
        try:
            if tr.buffer.touches(begin, end):
                rows = tr.buffer.merge_range(
                    begin, end, scan(conn, begin, end, reverse), limit, reverse
                )
            else:
                rows = query(conn, begin, end, limit, reverse)
        except sqlite3.Error as error:
            raise storage_error(tr.db.path, error, 1037) from error
        self._covered(begin, end, limit, reverse, rows)
        return rows

    def get_ranges(self, ranges: Sequence[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        """Forward range reads issued together: one SQL statement (and one round trip of
        simulated latency) for the ranges the write buffer does not touch; those it does
        are read one by one, merged with it."""
        tr = self.tr
        out: list[list[KeyValue]] = [[] for _ in ranges]
        plain: list[int] = []
        for i, (begin, end, limit) in enumerate(ranges):
            check_range(begin, end)
            if limit < 0:
                raise StorageError(2006, "limit must not be negative")
            if begin >= end:
                continue
            if tr.buffer.touches(begin, end):
                out[i] = self.get_range(begin, end, limit=limit)
            else:
                plain.append(i)
        if not plain:
            return out
        conn = tr.snapshot_conn()
        tr.db.latency.wait(tr.db.latency.read)
        try:
            found = query_many(conn, [ranges[i] for i in plain])
        except sqlite3.Error as error:
            raise storage_error(tr.db.path, error, 1037) from error
        for i, rows in zip(plain, found, strict=True):
            begin, end, limit = ranges[i]
            self._covered(begin, end, limit, False, rows)
            out[i] = rows
        return out

    def _covered(
        self, begin: bytes, end: bytes, limit: int, reverse: bool, rows: list[KeyValue]
    ) -> None:
        """Check and record what a range read covered: all of [begin, end), or up to the
        last row when limited (a read conflict unless this is a snapshot reader)."""
        if limit and len(rows) >= limit:
            if reverse:
                begin = rows[-1][0]
            else:
                end = key_after(rows[-1][0])
        tr = self.tr
        tr.buffer.check_readable(begin, end)
        if self.conflicts:
            tr.read_ranges.add(begin, end)

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        require_bytes("key", prefix)
        return self.get_range(prefix, prefix_end(prefix), limit=limit, reverse=reverse)
