"""The lease keeper's renewal when it retries: it renews only what still needs it.

A renewal reads every claim it renews, so a settlement of one of them by this
consumer's own worker, committing between the renewal's reads and its commit, makes it
conflict. Here that settlement is made to happen inside the renewal's first try (at its
commit); the retry must then leave the settled claim alone (not read it again) and
renew the others from the time of the retry, not of the first try.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import trio

import quick
from consumer.keeper import Held, LeaseKeeper
from keyspace.protocol import Database, Transaction
from keyspace.retry import run_transaction
from quick.jobs import now_ms

T = TypeVar("T")

LEASE_MS = 2_000


class _Try:
    """One try's transaction: the keys its batched reads asked for, and a hook run
    before its commit."""

    def __init__(self, inner: Transaction, spy: SpyDatabase) -> None:
        self._inner = inner
        self._spy = spy
        spy.reads.append([])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_many(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        self._spy.reads[-1].extend(keys)
        return self._inner.get_many(keys, *args, **kwargs)

    def commit(self) -> None:
        hook, self._spy.before_commit = self._spy.before_commit, None
        if hook is not None:
            hook()
        self._inner.commit()

    def on_error(self, error: Exception) -> None:
        self._inner.on_error(error)
        self._spy.reads.append([])


class SpyDatabase:
    """A database whose transactions record what they read, try by try."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.reads: list[list[bytes]] = []
        self.before_commit: Callable[[], None] | None = None

    def create_transaction(self) -> Transaction:
        return _Try(self.inner.create_transaction(), self)  # type: ignore[return-value]

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return run_transaction(self, fn, *args, **kwargs)  # type: ignore[arg-type]


class _Bridge:
    def __init__(self, db: SpyDatabase) -> None:
        self.db = db

    async def call_db(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.db, *args)


def _held_pair(db: Database) -> tuple[Held, Held]:
    queue = f"renew-{uuid.uuid4().hex[:8]}"
    quick.enqueue_many(db, [{"queue_id": queue, "topic": "t", "payload": n} for n in (1, 2)])
    first, second = quick.claim(db, queue, "w", limit=2, lease_ms=LEASE_MS)
    return Held(first, None), Held(second, None)


def test_keeper_renewal_retried_drops_a_claim_settled_meanwhile(exact_db: Database) -> None:
    settled, running = _held_pair(exact_db)
    spy = SpyDatabase(exact_db)
    keeper = LeaseKeeper(_Bridge(spy), LEASE_MS)  # type: ignore[arg-type]
    keeper.add([settled, running])

    def settle_first() -> None:  # as a lane does: record the attempt, then mark it
        quick.complete(exact_db, settled.claim)
        settled.settled = True

    spy.before_commit = settle_first
    now = now_ms()
    trio.run(keeper.renew, now + LEASE_MS // 2)  # both have half their lease left

    assert len(spy.reads) >= 2, "the renewal did not conflict with the settlement"
    retried = [key for try_reads in spy.reads[1:] for key in try_reads]
    settled_id = settled.claim.job_id.encode()
    assert not [key for key in retried if settled_id in key]
    assert any(running.claim.job_id.encode() in key for key in retried)
    assert running.claim.lease_until_ms >= now + LEASE_MS // 2 + LEASE_MS
    assert not settled.lost
    assert not running.lost
    assert quick.job_state(exact_db, settled.claim.job_id) is quick.JobState.COMPLETED


def test_keeper_renewal_retried_renews_from_the_time_of_the_retry(exact_db: Database) -> None:
    settled, running = _held_pair(exact_db)
    spy = SpyDatabase(exact_db)
    keeper = LeaseKeeper(_Bridge(spy), LEASE_MS)  # type: ignore[arg-type]
    keeper.add([settled, running])

    def slow_settlement() -> None:  # the first try lasted 300 ms, then conflicted
        time.sleep(0.3)
        quick.complete(exact_db, settled.claim)
        settled.settled = True

    spy.before_commit = slow_settlement
    now = now_ms() + LEASE_MS // 2  # both have half their lease left
    trio.run(keeper.renew, now)
    assert len(spy.reads) >= 2, "the renewal did not conflict with the settlement"
    assert running.claim.lease_until_ms >= now + 300 + LEASE_MS


def test_keeper_renews_no_claim_marked_settled(exact_db: Database) -> None:
    settled, running = _held_pair(exact_db)
    spy = SpyDatabase(exact_db)
    keeper = LeaseKeeper(_Bridge(spy), LEASE_MS)  # type: ignore[arg-type]
    keeper.add([settled, running])
    settled.settled = True  # recorded by its lane, not yet reported to the consumer
    before = settled.claim.lease_until_ms
    trio.run(keeper.renew, now_ms() + LEASE_MS // 2)
    read = [key for try_reads in spy.reads for key in try_reads]
    assert not [key for key in read if settled.claim.job_id.encode() in key]
    assert settled.claim.lease_until_ms == before
    assert running.claim.lease_until_ms > before
