"""One process's side of a sqlite store: pooled connections, the writer lock, the checkpointer.

Theory of operation
-------------------
Every process that opens a store keeps its own resources, reopened after ``fork``
(a child must not share its parent's SQLite connections or lock descriptor):

* **Connections** are pooled (at most :data:`IDLE_LIMIT` idle ones are kept); each is
  opened in WAL mode with the file's ``synchronous`` setting.
* **The writer lock** serialises commits: a thread lock in-process, then ``flock`` on
  ``<file>.lock`` across processes, so a waiter wakes the moment the lock is free rather
  than polling SQLite's busy handler. :class:`WriterLock` holds both, opens
  ``BEGIN IMMEDIATE`` unless told not to, and commits or rolls back on exit.
* **The checkpointer** (:mod:`keyspace.checkpoints`) starts with the first commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading

from keyspace.checkpoints import BACKSTOP_PAGES, TRUNCATE_BYTES, Checkpointer
from keyspace.errors import StorageError
from keyspace.sqlite_files import DAMAGED_CODE, PRIVATE_MODE, storage_error

__all__ = [
    "SYNC_MODES",
    "IDLE_LIMIT",
    "BUSY_SECONDS",
    "OPEN_BUSY_SECONDS",
    "Pool",
    "WriterLock",
    "rollback",
]

#: ``?sync=`` values and the ``PRAGMA synchronous`` each sets.
SYNC_MODES = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}
#: Idle connections kept per process: enough for a consumer's worker threads.
IDLE_LIMIT = 32
#: Each connection's page cache, KiB (SQLite's default is 2,000). A worker process holds
#: about ten connections, and on a store larger than their caches (a million tenants:
#: 600 MB) each fills up: at 16,000 KiB ten threads' random reads grew a process's
#: anonymous memory to 183 MB, at 4,000 to 61 MB. Pages past the cache come from the
#: OS's file cache, which every connection and process shares.
CACHE_KIB = 4000
#: How long SQLite waits on a lock held by another connection (its busy timeout). Commits
#: queue on quick's own writer lock, so only a long checkpoint or another program waits here.
BUSY_SECONDS = 30.0
#: How long opening a connection may wait to put the file in WAL mode. On a store in WAL
#: mode that takes no lock; on a brand-new file it takes an exclusive one for a moment.
#: Longer means another process holds a file that is empty or not in WAL mode (a store
#: truncated or replaced under a running worker), which would otherwise wait out
#: :data:`BUSY_SECONDS` on every retry.
OPEN_BUSY_SECONDS = 2.0


#: The store's tables: the key-value rows, the conflict log and bookkeeping.
SCHEMA = """
CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wlog(version INTEGER PRIMARY KEY, ranges BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES('pruned_through', 0);
INSERT OR IGNORE INTO meta VALUES('format', 1);
"""


class Pool:
    """This process's connections, writer lock and checkpointer for the store at ``path``."""

    def __init__(self, path: str, sync: str) -> None:
        self.path = path
        self.sync = sync
        self.closed = False
        self.setup()

    def setup(self) -> None:
        """Open this process's lock file, locks and connection pool (again after fork)."""
        self.pid = os.getpid()
        self.idle: list[sqlite3.Connection] = []
        self.pool_lock = threading.Lock()
        self.commit_lock = threading.Lock()
        self.commits = 0
        self.lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        self.checkpointer: Checkpointer | None = None

    def check_process(self) -> None:
        """Reopen this process's resources if it is a child forked since they were opened."""
        if self.pid != os.getpid():
            self.setup()

    def connect(self) -> sqlite3.Connection:
        """A new connection, configured for this store."""
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=OPEN_BUSY_SECONDS
        )
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as error:
            conn.close()
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            raise StorageError(
                DAMAGED_CODE,
                f"the sqlite store {self.path} is held by another process and cannot be put "
                "in WAL mode: it is empty or was replaced or truncated while in use",
            ) from error
        if str(mode).lower() != "wal":
            conn.close()
            raise StorageError(
                DAMAGED_CODE, f"the sqlite store {self.path} cannot use WAL mode (it is {mode})"
            )
        conn.execute(f"PRAGMA busy_timeout={round(BUSY_SECONDS * 1000)}")
        conn.execute(f"PRAGMA synchronous={SYNC_MODES[self.sync]}")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={TRUNCATE_BYTES}")
        return conn

    def acquire(self) -> sqlite3.Connection:
        """A connection from this process's pool (opened on demand)."""
        self.check_process()
        if self.closed:
            raise StorageError(2000, "the database is closed")
        with self.pool_lock:
            if self.idle:
                return self.idle.pop()
        return self.connect()

    def release(self, conn: sqlite3.Connection) -> None:
        """Return a connection that is outside any SQLite transaction to the pool."""
        if self.closed or self.pid != os.getpid():
            conn.close()
            return
        with self.pool_lock:
            if len(self.idle) < IDLE_LIMIT:
                self.idle.append(conn)
                return
        conn.close()

    def count_commit(self) -> int:
        """Count a commit (under the writer lock); start the checkpointer on the first."""
        self.commits += 1
        if self.checkpointer is None:
            self.checkpointer = Checkpointer(self.connect, lambda: self.commits)
        return self.commits

    def ensure_schema(self) -> None:
        """Create the store's tables if missing. A store that has them is only read: opening
        then never waits for the writer lock, which a writer paused mid-commit may hold."""
        conn = self.acquire()
        try:
            ready = conn.execute("SELECT 1 FROM meta WHERE name = 'format'").fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            ready = None
        finally:
            self.release(conn)
        if ready is None:
            with WriterLock(self) as lock:
                assert lock.conn is not None
                for statement in filter(str.strip, SCHEMA.split(";")):
                    lock.conn.execute(statement)

    def close(self) -> None:
        """Close pooled connections, the checkpointer and the lock file."""
        self.closed = True
        with self.pool_lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
        if self.pid == os.getpid():
            if self.checkpointer is not None:
                self.checkpointer.close()
            os.close(self.lock_fd)


class WriterLock:
    """Holds the writer lock (and, unless told not to, ``BEGIN IMMEDIATE``); commits on success.

    Given no connection it opens one for the duration and closes it after.
    """

    def __init__(
        self, pool: Pool, conn: sqlite3.Connection | None = None, begin: bool = True
    ) -> None:
        self.pool = pool
        self.conn = conn
        self.own = conn is None
        self.begin_now = begin

    def begin(self) -> None:
        """Open ``BEGIN IMMEDIATE`` on the held connection."""
        assert self.conn is not None
        self.conn.execute("BEGIN IMMEDIATE")

    def __enter__(self) -> WriterLock:
        pool = self.pool
        pool.check_process()
        pool.commit_lock.acquire()
        try:
            fcntl.flock(pool.lock_fd, fcntl.LOCK_EX)
            if self.conn is None:
                self.conn = pool.connect()
            if self.begin_now:
                self.begin()
        except BaseException:
            fcntl.flock(pool.lock_fd, fcntl.LOCK_UN)
            pool.commit_lock.release()
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
                        rollback(conn)
                    raise storage_error(self.pool.path, error, 1021) from error
            else:
                rollback(conn)
        finally:
            fcntl.flock(self.pool.lock_fd, fcntl.LOCK_UN)
            self.pool.commit_lock.release()
            if self.own:
                conn.close()


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back ``conn``'s open SQLite transaction, if it has one."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
