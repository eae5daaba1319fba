"""What the sqlite engine's reads and commit need of a transaction, as a protocol.

:class:`keyspace.sqlite_engine.SqliteTransaction` holds a transaction's state (its write
buffer, read-conflict ranges, read cache and read version) and the snapshot it reads at;
:mod:`keyspace.sqlite_reads` and :mod:`keyspace.sqlite_commit` work on that state
through :class:`TransactionState`, so they depend on this module and not on the engine
that imports them.
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

from keyspace.latency import Latency
from keyspace.ryw import RangeSet, WriteBuffer

__all__ = ["StoreFile", "TransactionState"]


class StoreFile(Protocol):
    """The database a transaction belongs to: its file and simulated latency."""

    path: str
    latency: Latency


class TransactionState(Protocol):
    """A sqlite transaction as its reads and its commit see it."""

    @property
    def db(self) -> StoreFile: ...

    buffer: WriteBuffer
    read_ranges: RangeSet
    extra_write_ranges: list[tuple[bytes, bytes]]
    read_version: int | None
    #: Stored values already read at this snapshot (None: absent).
    read_cache: dict[bytes, bytes | None]

    def check_live(self) -> None:
        """Raise unless the transaction may still be used (committed, timed out)."""
        ...

    def begin_read_at(self, key: bytes | None) -> bytes | None:
        """Pin the snapshot and take the read version, fetching ``key`` with it."""
        ...

    def snapshot_conn(self) -> sqlite3.Connection:
        """The connection holding the transaction's snapshot."""
        ...
