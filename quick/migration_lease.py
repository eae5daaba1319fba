"""The migration lease: one ``quick migrate`` pass moves a queue at a time.

Theory of operation
-------------------
Two passes moving one queue at once undo each other: one's recovery drops the jobs the
other staged and is about to install, and the queue is lost from both stores. So a pass
takes the queue's lease, ``("ml", queue)`` (owner, expiry), in the source *and* the
destination before it touches the queue, and gives it back when done.

Every transaction of the pass on that queue is **fenced** (:class:`Fenced`): it reads
the lease serializably, goes on only while its owner is this pass, and pushes the
expiry :data:`LEASE_MS` on. Renewal is thus free, and a pass that lost its lease (it
was paused past the expiry and another pass took over) stops at its next transaction
with :class:`LeaseTaken`; every step of the copy is safe to stop after, as after a
kill. A killed pass's lease expires, and the next pass takes it over and finishes
what the killed one left (see :mod:`quick.migration`).
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.errors import QuickError, StorageError
from keyspace.layout import MIGRATION_LEASES
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick.jobs import now_ms

__all__ = [
    "LEASE_MS",
    "Fenced",
    "Holding",
    "LeaseTaken",
    "PassStopped",
    "acquire",
    "holding",
    "release",
    "release_quietly",
]

T = TypeVar("T")

#: How long a lease outlives the last transaction of its pass. Every fenced transaction
#: renews it, and none lasts over 5 s, so only a pass paused or killed for this long
#: loses it; a rerun after a kill waits at most this long.
LEASE_MS = 15_000


class LeaseTaken(QuickError):
    """Another migration pass holds the queue's lease (this pass stops moving it)."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} is being moved by another quick migrate")
        self.queue = queue


class PassStopped(Exception):
    """The pass was interrupted elsewhere; its thread moving ``queue`` stops here."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"migration of {queue!r} stopped: the pass was interrupted")
        self.queue = queue


class Holding(enum.Enum):
    """Who holds a queue's migration lease, as one pass sees it."""

    FREE = "free"
    MINE = "mine"
    OTHER = "other"


def holding(record: bytes | None, owner: str, now: int) -> Holding:
    """Whether ``owner`` may act on the queue: the one decision about a lease.

    A lease of ``owner`` stays its own past the expiry until another pass takes it (so
    a slow pass goes on safely); an expired or undecodable lease is free to take.
    """
    if record is None:
        return Holding.FREE
    try:
        lease = unpack_value(record)
    except CorruptValue:
        return Holding.FREE
    if not isinstance(lease, dict):
        return Holding.FREE
    if lease.get("o") == owner:
        return Holding.MINE
    expiry = lease.get("ex")
    if not isinstance(expiry, int) or expiry <= now:
        return Holding.FREE
    return Holding.OTHER


def _write(tr: Transaction, queue: str, owner: str, now: int) -> None:
    tr.set(MIGRATION_LEASES.pack((queue,)), pack_value({"o": owner, "ex": now + LEASE_MS}))


@transactional
def acquire(tr: Transaction, queue: str, owner: str, now: int) -> bool:
    """Take (or renew) ``queue``'s lease for ``owner``; False while another pass holds it."""
    if holding(tr.get(MIGRATION_LEASES.pack((queue,))), owner, now) is Holding.OTHER:
        return False
    _write(tr, queue, owner, now)
    return True


@transactional
def release(tr: Transaction, queue: str, owner: str) -> None:
    """Give ``queue``'s lease back, if ``owner`` still holds it."""
    key = MIGRATION_LEASES.pack((queue,))
    if holding(tr.get(key), owner, 0) is Holding.MINE:
        tr.clear(key)


def release_quietly(db: Database, queue: str, owner: str) -> None:
    """:func:`release`, leaving the lease to expire when the store fails."""
    with contextlib.suppress(StorageError):
        release(db, queue, owner)


def _fenced(
    tr: Transaction, queue: str, owner: str, fn: Callable[..., T], args: tuple[Any, ...]
) -> T:
    key = MIGRATION_LEASES.pack((queue,))
    now = now_ms()
    if holding(tr.get(key), owner, now) is not Holding.MINE:
        raise LeaseTaken(queue)
    _write(tr, queue, owner, now)
    return fn(tr, *args)


class Fenced:
    """A store as one pass moving one queue uses it: every transaction through
    :meth:`transact` checks and renews the pass's lease on the queue first, in the same
    transaction. Reads whose results a later fenced transaction re-checks may go to
    :attr:`db` directly (unfenced, one round trip fewer).

    ``stop``, once set, ends the pass at its next fenced transaction (the pass was
    interrupted in another thread); every step is safe to stop after, as after a kill.

    Raises (from :meth:`transact`):
        LeaseTaken: another pass took the lease; nothing of this transaction committed.
        PassStopped: ``stop`` is set; nothing of this transaction ran.
    """

    __slots__ = ("db", "queue", "owner", "stop")

    def __init__(
        self, db: Database, queue: str, owner: str, stop: threading.Event | None = None
    ) -> None:
        self.db = db
        self.queue = queue
        self.owner = owner
        self.stop = stop

    def transact(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(tr, *args)`` under the lease, in the retry loop; its result."""
        if self.stop is not None and self.stop.is_set():
            raise PassStopped(self.queue)
        result: T = self.db.transact(_fenced, self.queue, self.owner, fn, args)
        return result
