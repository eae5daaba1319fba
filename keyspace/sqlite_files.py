"""The sqlite engine's files: where they go, who may read them, what a damaged one says.

A store is four files side by side: ``<name>`` (the database), ``<name>-wal`` and
``<name>-shm`` (SQLite's write-ahead log and its index) and ``<name>.lock`` (the
cross-process writer lock). They hold every payload ever enqueued, so new ones are
created readable by their owner only (0600): the lock file explicitly, the database
before SQLite first opens it, and the ``-wal``/``-shm`` files by SQLite itself, which
gives them the database file's permissions.

Errors: SQLite reports a busy or locked file (another writer) as a passing condition,
which stays retryable. A full disk (SQLITE_FULL, which SQLite reports for ENOSPC) is
:class:`StoreFull`: nothing was written and the store is intact. Anything else while
reading or writing (``file is not a database``, ``database disk image is malformed``,
an I/O error) will not go away by retrying, so it becomes a non-retryable
:class:`StorageError` naming the file: a damaged store fails fast instead of spinning
in the retry loop. Opening a path that cannot be a store (a directory, a missing
directory, a file that is not a database, a file shorter than its own header says)
raises :class:`EngineUnavailable` naming the resolved absolute path, and leaves behind
none of the files the attempt created.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

from keyspace.errors import EngineUnavailable, StorageError, StoreFull

__all__ = [
    "PRIVATE_MODE",
    "DAMAGED_CODE",
    "check_store_path",
    "check_store_size",
    "opening",
    "storage_error",
]

#: Owner read/write only, for every file of a store.
PRIVATE_MODE = 0o600
#: The code of a store that cannot be used (FoundationDB's internal_error): not retryable.
DAMAGED_CODE = 4100
_TRANSIENT = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_HEADER = b"SQLite format 3\x00"


def storage_error(path: str, error: sqlite3.Error, transient_code: int) -> StorageError:
    """The StorageError for ``error`` from the store at ``path``.

    Busy or locked: ``transient_code`` (retryable). Anything else: :data:`DAMAGED_CODE`,
    naming the file, with the SQLite error on ``__cause__`` when raised ``from`` it.
    """
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _TRANSIENT:
        return StorageError(transient_code, f"sqlite: {error}")
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return StoreFull(
            f"the disk holding the sqlite store {path} is full ({error}): nothing was "
            "written and the store is intact; free space on that disk and try again"
        )
    return StorageError(
        DAMAGED_CODE,
        f"the sqlite store {path} cannot be used: {error}. It may be damaged or not a "
        "quick store; restore it from a backup or point the URL at another file",
    )


def check_store_path(path: str) -> None:
    """Refuse a path that cannot hold a store: a directory, or one in a missing directory."""
    if os.path.isdir(path):
        raise EngineUnavailable(f"cannot open the sqlite store {path}: it is a directory")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise EngineUnavailable(
            f"cannot open the sqlite store {path}: directory {parent} does not exist "
            "(sqlite:///relative/path is relative to the working directory, "
            "sqlite:////absolute/path is absolute)"
        )


def check_store_size(path: str) -> None:
    """Refuse a store file shorter than its own header says: one truncated after the fact.

    SQLite reads a missing page as a damaged one only when a query reaches it, so a
    truncated store would otherwise half work (some commands, some queues). The header's
    page count is checked only when there is no write-ahead log to supply the pages the
    file lacks (a crash mid-checkpoint legitimately leaves the file short of them).
    """
    try:
        size = os.path.getsize(path)
        if os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0:
            return
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError:
        return  # missing (a new store) or unreadable: opening says so
    if size == 0:
        return  # a new, empty store
    if len(header) < 100 or not header.startswith(_HEADER):
        raise EngineUnavailable(
            f"cannot open the sqlite store {path}: it is {size} bytes and does not start "
            "with a SQLite header (truncated, or not a quick store)"
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]  # "in-header database size" is current
    if header_valid and pages * page_size > size:
        raise EngineUnavailable(
            f"cannot open the sqlite store {path}: it is truncated ({size} bytes, its "
            f"header says {pages} pages of {page_size} bytes = {pages * page_size}); "
            "restore it from a backup"
        )


@contextlib.contextmanager
def opening(path: str) -> Iterator[None]:
    """Create the store file 0600 if missing; if the block fails, remove what it created.

    Failures inside become :class:`EngineUnavailable` naming ``path``.
    """
    created = [name for name in (path, path + ".lock") if not os.path.exists(name)]
    if path in created:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
        except FileExistsError:  # another process created it just now: theirs to clean up
            created.remove(path)
    try:
        yield
    except (sqlite3.Error, OSError, StorageError) as error:
        for name in created:
            with contextlib.suppress(OSError):
                os.unlink(name)
        if isinstance(error, StorageError) and error.detail and path in error.detail:
            raise EngineUnavailable(error.detail) from error  # already names the file
        raise EngineUnavailable(
            f"cannot open the sqlite store {path}: {error}. Is it a quick store "
            "(sqlite database) and readable and writable by this user?"
        ) from error
