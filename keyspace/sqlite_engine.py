"""The embedded engine: FoundationDB's transaction semantics over one SQLite file.

Theory of operation
-------------------
The file holds three tables: ``kv`` (the ordered keyspace), ``wlog`` (one row per
committed transaction: its commit version and its write-conflict ranges) and ``meta``.
Each concern lives in its own module:

* **Reads** (:mod:`keyspace.sqlite_reads`): the first read pins a SQLite snapshot (WAL
  mode) and takes the read version from it; every later read uses the same snapshot,
  through the transaction's own buffered writes.
* **Writes** are buffered in memory (:class:`keyspace.ryw.WriteBuffer`).
* **Commit** (:mod:`keyspace.sqlite_commit`) takes the writer lock
  (:mod:`keyspace.sqlite_pool`, which also pools connections per process), checks the
  conflict log (:mod:`keyspace.sqlite_conflicts`) for writes into the transaction's read
  ranges since its read version (1020 on a conflict, nothing written), then applies the
  mutation log and appends its own conflict-log row.

This module holds the database and the transaction: the protocol's methods, the
transaction's lifetime (five seconds from its first read, then transaction_too_old
1007), its timeout across retries (1031) and the retry loop's backoff.

Durability: WAL with ``synchronous=normal`` by default. A commit survives the
process being killed (kill -9) at any point; an operating-system crash or power
loss may lose the last commits before the next WAL sync, never corrupt the file.
``?sync=full`` fsyncs every commit (FoundationDB's own guarantee), at a cost in commit
rate that depends on the disk (``scripts/bench_engine.py --sync full`` measures it).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from keyspace.atomic import AtomicMethods, AtomicOp
from keyspace.errors import StorageError
from keyspace.latency import Latency
from keyspace.limits import (
    DEFAULT_RETRY_LIMIT,
    DEFAULT_TIMEOUT_MS,
    KEY_LIMIT,
    LIFETIME_SECONDS,
    TRANSACTION_LIMIT,
    check_key,
    check_point_key,
    check_range,
    check_value,
    require_bytes,
    versionstamp_template,
)
from keyspace.protocol import KeyValue
from keyspace.retry import TransactionBackoff, run_transaction
from keyspace.ryw import RangeSet, WriteBuffer, versionstamp_range
from keyspace.sqlite_commit import apply_commit, stamp
from keyspace.sqlite_files import check_store_path, check_store_size, opening, storage_error
from keyspace.sqlite_pool import SYNC_MODES, Pool, rollback
from keyspace.sqlite_reads import Reader, key_after, prefix_end, read_committed
from keyspace.watches import FileWatch

__all__ = ["SqliteDatabase", "SqliteTransaction"]

T = TypeVar("T")


class SqliteDatabase:
    """A database in one SQLite file, shared safely by threads and processes.

    Args:
        path: the file; created with its schema when missing. ``self.pool`` holds this
            process's connections, writer lock and checkpointer.
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
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {sorted(SYNC_MODES)}, not {sync!r}")
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
        check_store_path(self.path)
        check_store_size(self.path)
        with opening(self.path):
            self.pool = Pool(self.path, sync)
            try:
                self.pool.ensure_schema()
            except BaseException:
                self.pool.close()
                raise

    def create_transaction(self) -> SqliteTransaction:
        """A new transaction on this database."""
        return SqliteTransaction(self)

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(tr, *args, **kwargs)`` in the retry loop and commit; return its result."""
        return run_transaction(self, fn, *args, **kwargs)

    def close(self) -> None:
        """Close pooled connections; transactions still open fail on their next call."""
        self.pool.close()

    def __enter__(self) -> SqliteDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteDatabase({self.path!r}, sync={self.sync!r})"


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


class SqliteTransaction(AtomicMethods):
    """A transaction on a :class:`SqliteDatabase`; see the module docstring."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._backoff: TransactionBackoff | None = None
        self._conn: sqlite3.Connection | None = None
        self._created = time.monotonic()
        #: Set by :meth:`cancel` (and by a failed :meth:`on_error`), cleared by :meth:`reset`.
        self._cancelled = False
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

    # Readers are made per use rather than kept: a transaction that held them would be a
    # reference cycle, freed only by the garbage collector instead of when dropped.
    @property
    def _reader(self) -> Reader:
        return Reader(self, True)

    @property
    def snapshot(self) -> Reader:
        """Reads that add no read-conflict ranges."""
        return Reader(self, False)

    # -- snapshot management (used by keyspace.sqlite_reads) --------------------

    def snapshot_conn(self) -> sqlite3.Connection:
        """The connection holding this transaction's snapshot, pinned on first use.

        Raises:
            StorageError: 1007 once the transaction has lived past its lifetime; 2017
                after commit; 1031 past the timeout.
        """
        self.check_live()
        if self.read_version is None:
            self.begin_read_at(None)
        elif time.monotonic() - self._started > LIFETIME_SECONDS:
            raise StorageError(1007, "transaction is older than 5 seconds")
        assert self._conn is not None
        return self._conn

    def begin_read_at(self, key: bytes | None) -> bytes | None:
        """Pin the snapshot and take the read version, fetching ``key`` in the same statement."""
        self.check_live()
        latency = self.db.latency
        latency.wait(latency.grv)
        if key is not None:
            latency.wait(latency.read)
        if self._conn is None:
            self._conn = self.db.pool.acquire()
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
            rollback(conn)
        except sqlite3.Error:
            conn.close()
            return
        self.db.pool.release(conn)

    def check_live(self) -> None:
        """Raise 1025 after cancel, 2017 after commit (until reset) and 1031 past the timeout."""
        if self._cancelled:
            raise StorageError(1025, "the transaction was cancelled; reset it to reuse")
        if self._done:
            raise StorageError(2017, "the transaction has already committed; reset it to reuse")
        timeout = self.db.timeout  # _check_timeout's test, written out: it runs on every call
        if timeout and time.monotonic() - self._created > timeout:
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
        if len(keys) < 2:
            return [reader.get(key) for key in keys]  # a point read pays its own round trip
        return reader.get_many(keys)

    def get_ranges(
        self, ranges: Sequence[tuple[bytes, bytes, int]], *, snapshot: bool = False
    ) -> list[list[KeyValue]]:
        """Forward range reads issued together (one statement); see the protocol."""
        return (self.snapshot if snapshot else self._reader).get_ranges(ranges)

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
        self.snapshot_conn()
        assert self.read_version is not None
        return self.read_version

    # -- writes, watches and conflict ranges -----------------------------------

    def set(self, key: bytes, value: bytes) -> None:
        check_key(key)
        check_value(value)
        self.check_live()
        self.buffer.set(key, value)

    def clear(self, key: bytes) -> None:
        check_key(key)
        self.check_live()
        self.buffer.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        check_range(begin, end)
        self.check_live()
        if begin > end:
            raise StorageError(2005, "range begin is after its end")
        self.buffer.clear_range(begin, end)

    def clear_range_startswith(self, prefix: bytes) -> None:
        require_bytes("key", prefix)
        self.clear_range(prefix, prefix_end(prefix))

    def atomic_op(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        check_key(key)
        check_value(param)
        self.check_live()
        self.buffer.atomic(op, key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        body, offset = versionstamp_template(key)
        check_key(body)
        check_value(value)
        self.check_live()
        unreadable = versionstamp_range(body, offset, self.read_version or 0)
        self.buffer.set_versionstamped_key(key, value, unreadable)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        check_key(key)
        body, _ = versionstamp_template(value)
        check_value(body)
        self.check_live()
        self.buffer.set_versionstamped_value(key, value)

    def get_versionstamp(self) -> _Versionstamp:
        """A future holding this transaction's versionstamp once it has committed.

        Asked for after commit, the future fails with used_during_commit (2017), as
        FoundationDB's is: take it before committing and wait on it after.
        """
        if self._cancelled:
            refused = _Versionstamp()
            refused.error = StorageError(1025, "get_versionstamp() after cancel")
            return refused
        if self._done:
            refused = _Versionstamp()
            refused.error = StorageError(2017, "get_versionstamp() after commit; call it before")
            return refused
        return self._versionstamp

    def watch(self, key: bytes) -> FileWatch:
        """Watch ``key``; see :mod:`keyspace.watches` for how a waiter learns of a change.

        Like FoundationDB's, the watch reads ``key`` serializably, so it adds a read
        conflict range: a commit that changes the key first makes this one conflict.
        """
        check_point_key(key)
        if len(key) > KEY_LIMIT:
            raise StorageError(2102, f"watched key of {len(key)} bytes exceeds {KEY_LIMIT}")
        seen = self._reader.get(key)
        db = self.db

        def changed() -> bool:
            return read_committed(db.pool, key) != seen

        return FileWatch(db.path + "-wal", changed)

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        """Conflict if [begin, end) changes after the read version; takes no read version.

        As on FoundationDB, the range is checked against the read version the transaction
        ends up with: the first read's, or, for one that never reads, one taken at commit
        (so a write committed before then does not conflict). See :mod:`keyspace.protocol`.
        """
        check_range(begin, end)
        self.check_live()
        self.read_ranges.add(begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        require_bytes("key", key)
        self.add_read_conflict_range(key, key_after(key))

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        check_range(begin, end)
        self.check_live()
        self.extra_write_ranges.append((begin, end))

    def add_write_conflict_key(self, key: bytes) -> None:
        require_bytes("key", key)
        self.add_write_conflict_range(key, key_after(key))

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
        self.check_live()
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
            conn = self.db.pool.acquire()
        else:
            self._conn = None
        try:
            version = apply_commit(self.db.pool, self, conn, reading)
        except sqlite3.Error as error:
            conn.close()
            raise storage_error(self.db.path, error, 1020) from error
        except BaseException:
            self.db.pool.release(conn)
            raise
        self.db.pool.release(conn)
        self._committed_version = version
        self._versionstamp.value = stamp(version)
        self._done = True

    def get_committed_version(self) -> int:
        """The commit version; -1 before a commit and after a read-only one (as on FDB)."""
        return -1 if self._committed_version is None else self._committed_version

    def on_error(self, error: BaseException) -> None:
        """Back off and reset if ``error`` is retryable; re-raise it otherwise.

        As on FoundationDB: after :meth:`cancel` this raises transaction_cancelled
        (1025), past the timeout transaction_timed_out (1031); and once it has raised,
        the transaction is cancelled until :meth:`reset`.
        """
        if not isinstance(error, StorageError):
            raise error
        self._end_read()
        try:
            if self._cancelled:
                raise StorageError(1025, "on_error() after cancel; reset the transaction")
            self._check_timeout()
            if self._backoff is None:
                limit = self.db.retry_limit
                self._backoff = TransactionBackoff(retry_limit=None if limit < 0 else limit)
            self._backoff.wait(error)
            self._check_timeout()
        except StorageError as failed:
            if failed.code != 1031:  # past the timeout every call keeps saying so
                self._cancelled = True
            raise
        self._init()

    def reset(self) -> None:
        """Discard everything this transaction did and start afresh (timeout and retries too)."""
        self._end_read()
        self._backoff = None
        self._cancelled = False
        self._created = time.monotonic()
        self._init()

    def cancel(self) -> None:
        """Abandon the transaction: later calls raise transaction_cancelled (1025) until reset."""
        self._end_read()
        self._init()
        self._cancelled = True

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
