"""The embedded engine: FoundationDB's transaction semantics over one SQLite file.

Theory of operation
-------------------
The file holds three tables: ``kv`` (the ordered keyspace), ``wlog`` (one row per
committed transaction: its commit version and its write-conflict ranges) and ``meta``.

* **Reads.** A transaction's first read opens a SQLite read transaction (WAL mode),
  which pins a consistent snapshot of the file; its read version is the newest
  commit version in that snapshot. Every later read, snapshot or not, uses the same
  snapshot, so a transaction sees one point in time plus its own buffered writes.
* **Writes** are buffered in memory (:class:`keyspace.ryw.WriteBuffer`).
* **Commit** takes the writer lock (a thread lock in-process, then ``flock`` on
  ``<file>.lock`` across processes, so waiters wake the moment the lock is free
  rather than polling SQLite's busy handler), opens ``BEGIN IMMEDIATE``, and checks
  every ``wlog`` row newer than the read version against the transaction's read
  ranges: any overlap is a conflict (1020) and nothing is written. Otherwise it
  applies the mutation log in order, stamps versionstamped keys and values, appends
  its own ``wlog`` row, and commits.

Why optimistic concurrency with conflict ranges rather than serialized writers:
serialized writers (one ``BEGIN IMMEDIATE`` held from a transaction's first read)
would make every transaction wait for every other, including producers that never
touch a consumer's keys; QuiCK's whole design depends on those not conflicting.
With conflict ranges two transactions conflict exactly when FoundationDB would
make them conflict, and the write lock is held only for the short apply step.
Measured (``scripts/bench_engine.py``): the conflict check costs one indexed read
of ``wlog`` per commit when nothing intervened; see the README for the ratios.

Versions are microseconds since the epoch, kept strictly increasing
(``max(previous + 1, now)``), so they advance about 1,000,000 per second as
FoundationDB's do and versionstamps (8-byte version, 2-byte batch order 0) are
strictly increasing across every process sharing the file. ``wlog`` rows older
than ten seconds are pruned; a transaction whose read version predates a pruned
row, or that has lived over five seconds, fails with transaction_too_old (1007).

Durability: WAL with ``synchronous=normal`` by default. A commit survives the
process being killed (kill -9) at any point; an operating-system crash or power
loss may lose the last commits before the next WAL sync, never corrupt the file.
``?sync=full`` fsyncs every commit (FoundationDB's own guarantee) at about a tenth
of the commit rate on this machine's disk.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import msgpack

from keyspace.atomic import AtomicOp, apply
from keyspace.checkpoints import BACKSTOP_PAGES, TRUNCATE_BYTES, Checkpointer
from keyspace.errors import StorageError
from keyspace.latency import Latency
from keyspace.limits import (
    DEFAULT_RETRY_LIMIT,
    DEFAULT_TIMEOUT_MS,
    KEY_LIMIT,
    LIFETIME_SECONDS,
    SYSTEM_PREFIX,
    TRANSACTION_LIMIT,
    check_key,
    check_range,
    check_read_key,
    check_value,
    fill_versionstamp,
    require_bytes,
    versionstamp_template,
)
from keyspace.protocol import KeyValue
from keyspace.retry import Backoff, run_transaction
from keyspace.ryw import MutationKind, RangeSet, WriteBuffer, versionstamp_range
from keyspace.sqlite_files import PRIVATE_MODE, check_store_path, opening, storage_error
from keyspace.watches import FileWatch

__all__ = ["SqliteDatabase", "SqliteTransaction"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wlog(version INTEGER PRIMARY KEY, ranges BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES('pruned_through', 0);
INSERT OR IGNORE INTO meta VALUES('format', 1);
"""
_WLOG_RETENTION_US = 10_000_000
_PRUNE_EVERY = 512
_RANGE_PAGE = 256
#: Keys per ``SELECT ... IN (...)`` of a get_many (under SQLite's 999-variable floor).
_MANY_PAGE = 500
_SYNC_MODES = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}
_SQLITE_BUSY_SNAPSHOT = 517


def _now_us() -> int:
    return time.time_ns() // 1000


def _stamp(version: int) -> bytes:
    return version.to_bytes(8, "big") + b"\x00\x00"


def _key_after(key: bytes) -> bytes:
    return key + b"\x00"


def _prefix_end(prefix: bytes) -> bytes:
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return SYSTEM_PREFIX
    return stripped[:-1] + bytes([stripped[-1] + 1])


class SqliteDatabase:
    """A database in one SQLite file, shared safely by threads and processes.

    Args:
        path: the file; created with its schema when missing.
        sync: ``normal`` (default) or ``full``; see the module docstring.
        retry_limit: retries ``on_error`` allows one transaction (-1 = no limit); past it
            the error itself is raised, as FoundationDB's ``transaction_retry_limit`` does.
        timeout_ms: a transaction's deadline across all its retries, counted from its
            creation (0 = none); past it every call raises transaction_timed_out (1031).
        latency: simulated FoundationDB round trips (see :mod:`keyspace.latency`).
    """

    #: Engines serve the default namespace; :mod:`keyspace.namespace` wraps them for others.
    namespace: str | None = None

    def __init__(
        self,
        path: str,
        *,
        sync: str = "normal",
        retry_limit: int = DEFAULT_RETRY_LIMIT,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        latency: Latency | None = None,
        url: str = "",
    ) -> None:
        if sync not in _SYNC_MODES:
            raise ValueError(f"sync must be one of {sorted(_SYNC_MODES)}, not {sync!r}")
        if retry_limit < -1:
            raise ValueError(f"retry_limit must be -1 (none) or more, not {retry_limit}")
        if timeout_ms < 0:
            raise ValueError(f"timeout must be 0 (none) or more milliseconds, not {timeout_ms}")
        self.path = os.path.abspath(path)
        self.url = url or f"sqlite:///{self.path}"
        self.sync = sync
        self.retry_limit = retry_limit
        self.timeout = timeout_ms / 1000
        self.latency = latency or Latency()
        self._closed = False
        check_store_path(self.path)
        with opening(self.path):
            self._setup_process()
            try:
                with _WriterLock(self) as lock:
                    assert lock.conn is not None
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        lock.conn.execute(statement)
            except BaseException:
                os.close(self._lock_fd)
                raise

    # -- process-local resources ---------------------------------------------

    def _setup_process(self) -> None:
        """Open this process's lock file, locks and connection pool (again after fork)."""
        self._pid = os.getpid()
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._commits = 0
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        self._checkpointer: Checkpointer | None = None

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            self._setup_process()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={_SYNC_MODES[self.sync]}")
        conn.execute("PRAGMA cache_size=-16000")
        conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={TRUNCATE_BYTES}")
        return conn

    def acquire(self) -> sqlite3.Connection:
        """A connection from this process's pool (opened on demand)."""
        self._check_process()
        if self._closed:
            raise StorageError(2000, "the database is closed")
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def release(self, conn: sqlite3.Connection) -> None:
        """Return a connection that is outside any SQLite transaction to the pool."""
        if self._closed or self._pid != os.getpid():
            conn.close()
            return
        with self._pool_lock:
            if len(self._idle) < 32:
                self._idle.append(conn)
                return
        conn.close()

    # -- public API ----------------------------------------------------------

    def create_transaction(self) -> SqliteTransaction:
        """A new transaction on this database."""
        return SqliteTransaction(self)

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(tr, *args, **kwargs)`` in the retry loop and commit; return its result."""
        return run_transaction(self, fn, *args, **kwargs)

    def close(self) -> None:
        """Close pooled connections; transactions still open fail on their next call."""
        self._closed = True
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self._pid == os.getpid():
            if self._checkpointer is not None:
                self._checkpointer.close()
            os.close(self._lock_fd)

    def __enter__(self) -> SqliteDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteDatabase({self.path!r}, sync={self.sync!r})"

    # -- commit --------------------------------------------------------------

    def apply_commit(self, tr: SqliteTransaction, conn: sqlite3.Connection, reading: bool) -> int:
        """Check conflicts and apply ``tr``'s writes under the writer lock; return the version.

        When ``conn`` still holds ``tr``'s read snapshot (``reading``), the write is first
        tried in place: SQLite accepts it only if nothing has committed since the snapshot,
        in which case there can be no conflict and the read version is the latest version.
        Otherwise SQLite refuses at once (SQLITE_BUSY_SNAPSHOT) and the commit falls back
        to a fresh ``BEGIN IMMEDIATE`` and the conflict check.
        """
        with _WriterLock(self, conn, begin=not reading) as lock:
            if reading:
                assert tr.read_version is not None
                try:
                    return self._write(conn, tr, tr.read_version)
                except sqlite3.OperationalError as error:
                    if error.sqlite_errorcode != _SQLITE_BUSY_SNAPSHOT:
                        raise
                    conn.execute("ROLLBACK")
                    lock.begin()
            if tr.read_ranges and tr.read_version is not None:
                latest = _latest_version(conn)
                if latest > tr.read_version:
                    _check_conflicts(conn, tr.read_version, tr.read_ranges)
                return self._write(conn, tr, latest)
            return self._write(conn, tr, None)

    def _write(self, conn: sqlite3.Connection, tr: SqliteTransaction, latest: int | None) -> int:
        """Apply the log and append the wlog row; ``latest`` None = look it up as needed."""
        if latest is None and tr.buffer.stamped:
            latest = _latest_version(conn)
        version = 0 if latest is None else max(latest + 1, _now_us())
        points, ranges = _apply(conn, tr.buffer, _stamp(version))
        for begin, end in tr.extra_write_ranges:
            ranges.extend((begin, end))
        blob = msgpack.packb((points, ranges))
        if latest is None:
            # One statement computes the next version from the newest row and appends.
            (version,) = conn.execute(
                "INSERT INTO wlog(version, ranges) "
                "SELECT max(coalesce(max(version), 0) + 1, ?), ? FROM wlog RETURNING version",
                (_now_us(), blob),
            ).fetchone()
        else:
            conn.execute("INSERT INTO wlog(version, ranges) VALUES(?, ?)", (version, blob))
        self._commits += 1
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self._connect, lambda: self._commits)
        if self._commits % _PRUNE_EVERY == 0:
            _prune(conn, version - _WLOG_RETENTION_US)
        return version


class _WriterLock:
    """Holds the writer lock (and, unless told not to, ``BEGIN IMMEDIATE``); commits on success."""

    def __init__(
        self, db: SqliteDatabase, conn: sqlite3.Connection | None = None, begin: bool = True
    ) -> None:
        self.db = db
        self.conn = conn
        self.own = conn is None
        self.begin_now = begin

    def begin(self) -> None:
        assert self.conn is not None
        self.conn.execute("BEGIN IMMEDIATE")

    def __enter__(self) -> _WriterLock:
        db = self.db
        db._check_process()
        db._commit_lock.acquire()
        try:
            fcntl.flock(db._lock_fd, fcntl.LOCK_EX)
            if self.conn is None:
                self.conn = db._connect()
            if self.begin_now:
                self.begin()
        except BaseException:
            fcntl.flock(db._lock_fd, fcntl.LOCK_UN)
            db._commit_lock.release()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn = self.conn
        assert conn is not None
        try:
            if exc_type is None:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as error:
                    with contextlib.suppress(sqlite3.Error):
                        _rollback(conn)
                    raise storage_error(self.db.path, error, 1021) from error
            else:
                _rollback(conn)
        finally:
            fcntl.flock(self.db._lock_fd, fcntl.LOCK_UN)
            self.db._commit_lock.release()
            if self.own:
                conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _latest_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(version) FROM wlog").fetchone()
    return row[0] or 0


def _check_conflicts(conn: sqlite3.Connection, read_version: int, read_ranges: RangeSet) -> None:
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


def _apply(
    conn: sqlite3.Connection, buffer: WriteBuffer, stamp: bytes
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
    operands = _stored(conn, [m.key for m in log if m.kind is MutationKind.ATOMIC])
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
            elif any(begin <= key < end for begin, end in cleared):
                current = None
            else:
                current = operands.get(key)
            final[key] = apply(m.op, current, m.value)
            points.append(key)
        elif kind is MutationKind.VERSIONSTAMPED_KEY:
            body, offset = versionstamp_template(m.key)
            key = fill_versionstamp(body, offset, stamp)
            final[key] = m.value
            points.append(key)
        else:
            body, offset = versionstamp_template(m.value)
            final[m.key] = fill_versionstamp(body, offset, stamp)
            points.append(m.key)
    for begin, end in cleared:
        conn.execute("DELETE FROM kv WHERE k >= ? AND k < ?", (begin, end))
    gone = [(key,) for key, value in final.items() if value is None]
    if gone:
        conn.executemany("DELETE FROM kv WHERE k = ?", gone)
    kept = [(key, value) for key, value in final.items() if value is not None]
    if kept:
        conn.executemany("INSERT OR REPLACE INTO kv(k, v) VALUES(?, ?)", kept)
    return points, ranges


def _stored(conn: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, bytes]:
    """The stored values of ``keys`` (absent ones left out), a page of keys per query."""
    found: dict[bytes, bytes] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _MANY_PAGE):
        page = unique[start : start + _MANY_PAGE]
        marks = ",".join("?" * len(page))
        found.update(conn.execute(f"SELECT k, v FROM kv WHERE k IN ({marks})", page).fetchall())
    return found


def _prune(conn: sqlite3.Connection, below: int) -> None:
    row = conn.execute(
        "SELECT max(version) FROM wlog WHERE version < ? "
        "AND version < (SELECT max(version) FROM wlog)",
        (below,),
    ).fetchone()
    if row[0] is None:
        return
    conn.execute("DELETE FROM wlog WHERE version <= ?", (row[0],))
    conn.execute("UPDATE meta SET value = max(value, ?) WHERE name='pruned_through'", (row[0],))


class _Versionstamp:
    """The versionstamp future of a sqlite transaction."""

    __slots__ = ("error", "value")

    def __init__(self) -> None:
        self.value: bytes | None = None
        self.error: StorageError | None = None

    def wait(self) -> bytes:
        if self.error is not None:
            raise self.error
        if self.value is None:
            raise StorageError(2021, "the transaction has not committed a write")
        return self.value


class _Reader:
    """Reads at the transaction's snapshot; ``conflicts`` says whether they add read ranges."""

    __slots__ = ("conflicts", "tr")

    def __init__(self, tr: SqliteTransaction, conflicts: bool) -> None:
        self.tr = tr
        self.conflicts = conflicts

    def get(self, key: bytes) -> bytes | None:
        check_read_key(key)
        tr = self.tr
        tr._live()
        fetch: Callable[[bytes], bytes | None]
        if tr.read_version is None:
            fetch = tr._begin_read_at
        else:
            conn = tr._snapshot_conn()

            cache = tr.read_cache

            def fetch(k: bytes) -> bytes | None:
                if k in cache:
                    return cache[k]
                if not tr._batched:
                    tr.db.latency.wait(tr.db.latency.read)
                value = cache[k] = _fetch(conn, k)
                return value

        try:
            value, consulted = tr.buffer.read(key, fetch)
        except sqlite3.Error as error:
            raise storage_error(tr.db.path, error, 1037) from error
        if consulted and self.conflicts:
            tr.read_ranges.add(key, _key_after(key))
        return value

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values at ``keys``: one SQL statement per page of keys the buffer cannot answer."""
        for key in keys:
            check_read_key(key)
        tr = self.tr
        conn = tr._snapshot_conn()
        cache = tr.read_cache
        wanted = [key for key in dict.fromkeys(keys) if key not in cache]
        try:
            for start in range(0, len(wanted), _MANY_PAGE):
                page = wanted[start : start + _MANY_PAGE]
                marks = ",".join("?" * len(page))
                query = f"SELECT k, v FROM kv WHERE k IN ({marks})"
                found = dict(conn.execute(query, page).fetchall())
                for key in page:
                    cache[key] = found.get(key)
        except sqlite3.Error as error:
            raise storage_error(tr.db.path, error, 1037) from error
        out = []
        read = tr.buffer.read
        ranges = tr.read_ranges if self.conflicts else None
        for key in keys:
            value, consulted = read(key, cache.__getitem__)
            if consulted and ranges is not None:
                ranges.add(key, _key_after(key))
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
        conn = tr._snapshot_conn()
        tr.db.latency.wait(tr.db.latency.read)
        try:
            if tr.buffer.touches(begin, end):
                rows = tr.buffer.merge_range(
                    begin, end, _scan(conn, begin, end, reverse), limit, reverse
                )
            else:
                rows = _query(conn, begin, end, limit, reverse)
        except sqlite3.Error as error:
            raise storage_error(tr.db.path, error, 1037) from error
        # What the read covered: all of [begin, end), or up to the last row when limited.
        if limit and len(rows) >= limit:
            if reverse:
                begin = rows[-1][0]
            else:
                end = _key_after(rows[-1][0])
        tr.buffer.check_readable(begin, end)
        if self.conflicts:
            tr.read_ranges.add(begin, end)
        return rows

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        require_bytes("key", prefix)
        return self.get_range(prefix, _prefix_end(prefix), limit=limit, reverse=reverse)


def _fetch(conn: sqlite3.Connection, key: bytes) -> bytes | None:
    row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
    return row[0] if row else None


def _query(
    conn: sqlite3.Connection, begin: bytes, end: bytes, limit: int, reverse: bool
) -> list[KeyValue]:
    order = "DESC" if reverse else "ASC"
    return conn.execute(
        f"SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k {order} LIMIT ?",
        (begin, end, min(limit, _SQLITE_MAX_INT) or -1),  # a larger limit is no limit
    ).fetchall()


_SQLITE_MAX_INT = 2**63 - 1


def _scan(conn: sqlite3.Connection, begin: bytes, end: bytes, reverse: bool) -> Iterator[KeyValue]:
    """Stored rows of [begin, end) in read order, fetched a page at a time."""
    while begin < end:
        page = _query(conn, begin, end, _RANGE_PAGE, reverse)
        yield from page
        if len(page) < _RANGE_PAGE:
            return
        if reverse:
            end = page[-1][0]
        else:
            begin = _key_after(page[-1][0])


class SqliteTransaction:
    """A transaction on a :class:`SqliteDatabase`; see the module docstring."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._backoff: Backoff | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader = _Reader(self, True)
        self.snapshot = _Reader(self, False)
        self._created = time.monotonic()
        self._batched = False
        self._init()

    def _init(self) -> None:
        self.buffer = WriteBuffer()
        self.read_ranges = RangeSet()
        self.extra_write_ranges: list[tuple[bytes, bytes]] = []
        self.read_version: int | None = None
        self._started = 0.0
        self._committed_version: int | None = None
        self._versionstamp = _Versionstamp()
        self._done = False
        #: Stored values already read at this snapshot (None: absent), as FoundationDB's
        #: read-your-writes cache keeps them: a second read of a key costs no query. The
        #: write buffer still answers first for keys this transaction wrote.
        self.read_cache: dict[bytes, bytes | None] = {}

    # -- snapshot management -------------------------------------------------

    def _snapshot_conn(self) -> sqlite3.Connection:
        self._live()
        if self.read_version is None:
            self._begin_read()
        elif time.monotonic() - self._started > LIFETIME_SECONDS:
            raise StorageError(1007, "transaction is older than 5 seconds")
        assert self._conn is not None
        return self._conn

    def _begin_read(self) -> None:
        self._begin_read_at(None)

    def _begin_read_at(self, key: bytes | None) -> bytes | None:
        """Pin the snapshot and take the read version, fetching ``key`` in the same statement."""
        self._live()
        latency = self.db.latency
        latency.wait(latency.grv)
        if key is not None and not self._batched:
            latency.wait(latency.read)
        if self._conn is None:
            self._conn = self.db.acquire()
        conn = self._conn
        try:
            conn.execute("BEGIN")
            version, value = conn.execute(
                "SELECT (SELECT max(version) FROM wlog), (SELECT v FROM kv WHERE k = ?)", (key,)
            ).fetchone()
        except sqlite3.Error as error:
            self._end_read()
            raise storage_error(self.db.path, error, 1037) from error
        self.read_version = version or 0
        self._started = time.monotonic()
        if key is not None:
            self.read_cache[key] = value
        return value  # type: ignore[no-any-return]

    def _end_read(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        try:
            _rollback(conn)
        except sqlite3.Error:
            conn.close()
            return
        self.db.release(conn)

    def _live(self) -> None:
        if self._done:
            raise StorageError(2017, "the transaction has already committed; reset it to reuse")
        self._check_timeout()

    def _check_timeout(self) -> None:
        """Raise 1031 once the database's transaction timeout has passed since creation."""
        timeout = self.db.timeout
        if timeout and time.monotonic() - self._created > timeout:
            self._end_read()
            raise StorageError(1031, f"the transaction passed its {timeout:g} s timeout")

    # -- reads -----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value at ``key`` (None when absent); adds a read conflict."""
        return self._reader.get(key)

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        """The values at ``keys`` in order; serializable reads add read conflicts."""
        reader = self.snapshot if snapshot else self._reader
        self.db.latency.wait(self.db.latency.read)  # one round trip for all the keys
        if len(keys) < 2:
            return [reader.get(key) for key in keys]
        return reader.get_many(keys)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        """Pairs with ``begin <= key < end``; adds a read conflict on what was read."""
        return self._reader.get_range(begin, end, limit=limit, reverse=reverse)

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        """Pairs whose key starts with ``prefix``."""
        return self._reader.get_range_startswith(prefix, limit=limit, reverse=reverse)

    def get_read_version(self) -> int:
        """The version this transaction reads at (acquired on first use)."""
        self._snapshot_conn()
        assert self.read_version is not None
        return self.read_version

    # -- writes ----------------------------------------------------------------

    def set(self, key: bytes, value: bytes) -> None:
        check_key(key)
        check_value(value)
        self._live()
        self.buffer.set(key, value)

    def clear(self, key: bytes) -> None:
        check_key(key)
        self._live()
        self.buffer.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        check_range(begin, end)
        self._live()
        if begin > end:
            raise StorageError(2005, "range begin is after its end")
        self.buffer.clear_range(begin, end)

    def clear_range_startswith(self, prefix: bytes) -> None:
        require_bytes("key", prefix)
        self.clear_range(prefix, _prefix_end(prefix))

    def _atomic(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        check_key(key)
        check_value(param)
        self._live()
        self.buffer.atomic(op, key, param)

    def add(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.ADD, key, param)

    def bit_and(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.BIT_AND, key, param)

    def bit_or(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.BIT_OR, key, param)

    def bit_xor(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.BIT_XOR, key, param)

    def max(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.MAX, key, param)

    def min(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.MIN, key, param)

    def byte_max(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.BYTE_MAX, key, param)

    def byte_min(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.BYTE_MIN, key, param)

    def compare_and_clear(self, key: bytes, param: bytes) -> None:
        self._atomic(AtomicOp.COMPARE_AND_CLEAR, key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        body, offset = versionstamp_template(key)
        check_key(body)
        check_value(value)
        self._live()
        unreadable = versionstamp_range(body, offset, self.read_version or 0)
        self.buffer.set_versionstamped_key(key, value, unreadable)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        check_key(key)
        body, _ = versionstamp_template(value)
        check_value(body)
        self._live()
        self.buffer.set_versionstamped_value(key, value)

    def get_versionstamp(self) -> _Versionstamp:
        """A future holding this transaction's versionstamp once it has committed.

        Asked for after commit, the future fails with used_during_commit (2017), as
        FoundationDB's is: take it before committing and wait on it after.
        """
        if self._done:
            refused = _Versionstamp()
            refused.error = StorageError(2017, "get_versionstamp() after commit; call it before")
            return refused
        return self._versionstamp

    # -- conflict ranges -------------------------------------------------------

    def watch(self, key: bytes) -> FileWatch:
        """Watch ``key``; see :mod:`keyspace.watches` for how a waiter learns of a change.

        Like FoundationDB's, the watch reads ``key`` serializably, so it adds a read
        conflict range: a commit that changes the key first makes this one conflict.
        """
        check_read_key(key)
        if len(key) > KEY_LIMIT:
            raise StorageError(2102, f"watched key of {len(key)} bytes exceeds {KEY_LIMIT}")
        seen = self._reader.get(key)
        db = self.db

        def changed() -> bool:
            current: bytes | None = db.transact(lambda tr: tr.snapshot.get(key))
            return current != seen

        return FileWatch(db.path + "-wal", changed)

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        """Conflict if [begin, end) changes after the read version; takes no read version.

        As on FoundationDB, the range is checked against the read version the transaction
        ends up with: the first read's, or, for one that never reads, one taken at commit
        (so a write committed before then does not conflict). See :mod:`keyspace.protocol`.
        """
        check_range(begin, end)
        self._live()
        self.read_ranges.add(begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        require_bytes("key", key)
        self.add_read_conflict_range(key, _key_after(key))

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        check_range(begin, end)
        self._live()
        self.extra_write_ranges.append((begin, end))

    def add_write_conflict_key(self, key: bytes) -> None:
        require_bytes("key", key)
        self.add_write_conflict_range(key, _key_after(key))

    # -- lifecycle -------------------------------------------------------------

    def _size(self) -> int:
        size = self.buffer.size
        if size < TRANSACTION_LIMIT // 2 and len(self.read_ranges.begins) < 200:
            return size
        for begins in (self.read_ranges.begins, self.read_ranges.ends):
            size += sum(map(len, begins))
        return size

    def commit(self) -> None:
        """Commit the buffered writes, or raise StorageError (1020 on conflict)."""
        self._live()
        if self.read_version is not None and (time.monotonic() - self._started > LIFETIME_SECONDS):
            self._end_read()
            raise StorageError(1007, "transaction is older than 5 seconds")
        if not self.buffer and not self.extra_write_ranges:
            self._end_read()
            self._committed_version = -1
            self._done = True
            return
        if self._size() > TRANSACTION_LIMIT:
            self._end_read()
            raise StorageError(2101, f"transaction of {self._size()} bytes exceeds the limit")
        latency = self.db.latency
        if self.read_version is None:
            latency.wait(latency.grv)  # FDB takes a read version for a commit that never read
        latency.wait(latency.commit)  # before the writer lock: concurrent commits overlap
        conn = self._conn
        reading = conn is not None and conn.in_transaction
        if conn is None:
            conn = self.db.acquire()
        else:
            self._conn = None
        try:
            version = self.db.apply_commit(self, conn, reading)
        except sqlite3.Error as error:
            conn.close()
            raise storage_error(self.db.path, error, 1020) from error
        except BaseException:
            self.db.release(conn)
            raise
        self.db.release(conn)
        self._committed_version = version
        self._versionstamp.value = _stamp(version)
        self._done = True

    def get_committed_version(self) -> int:
        """The commit version; -1 before a commit and after a read-only one (as on FDB)."""
        return -1 if self._committed_version is None else self._committed_version

    def on_error(self, error: BaseException) -> None:
        """Back off and reset if ``error`` is retryable; re-raise it otherwise."""
        if not isinstance(error, StorageError):
            raise error
        self._end_read()
        self._check_timeout()
        if self._backoff is None:
            limit = self.db.retry_limit
            self._backoff = Backoff(retry_limit=None if limit < 0 else limit)
        self._backoff.wait(error)
        self._check_timeout()
        self._init()

    def reset(self) -> None:
        """Discard everything this transaction did and start afresh (timeout and retries too)."""
        self._end_read()
        self._backoff = None
        self._created = time.monotonic()
        self._init()

    def cancel(self) -> None:
        """Abandon the transaction; later calls fail until reset."""
        self._end_read()
        self._init()
        self._done = True

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
