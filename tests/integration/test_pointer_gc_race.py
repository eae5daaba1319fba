"""The pointer collection race, deterministically: a collector
(``pointers.collect_empty_pointer`` or a claim) that saw an empty queue races an enqueue, in
either commit order; the new job stays pointed (the invariant of
:mod:`tests.integration.pointer_store` holds) and is claimed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

import quick
from keyspace.errors import StorageError
from keyspace.protocol import Database, Transaction
from quick import pointers
from quick.claiming import claim_jobs
from quick.enqueueing import prepare, store_new
from quick.jobs import Claim
from tests.integration.pointer_store import (
    LEASE_MS,
    NOT_COMMITTED,
    T0,
    check_pointer_invariant,
    read_queues,
)

# -- the specific race, deterministically ------------------------------------------------


def _commit_retrying(db: Database, tr: Transaction, body: Callable[[Transaction], Any]) -> None:
    while True:
        try:
            tr.commit()
            return
        except StorageError as error:
            if error.code != NOT_COMMITTED:
                raise
        tr = db.create_transaction()
        body(tr)


def _empty_but_pointed(db: Database, queue: str, now: int) -> None:
    """A queue whose only job ran: its pointer outlives it."""
    old = prepare(queue, "t", "old", now=now)
    db.transact(lambda tr: store_new(tr, old))
    (claim,) = quick.claim(db, queue, "w", now_ms=now)
    quick.complete(db, claim)
    counts = quick.queue_counts(db, queue)
    assert sum(counts.values()) == 0
    assert _pointer_vis(db, queue) is not None


def _pointer_vis(db: Database, queue: str) -> int | None:
    view = read_queues(db, [queue])[queue]
    return view.record_vis


@pytest.mark.parametrize("enqueue_commits_first", [True, False], ids=["enqueue-first", "gc-first"])
@pytest.mark.parametrize("stage", ["mark-empty", "delete"])
@pytest.mark.parametrize("collector", ["collect", "claim"])
def test_pointer_gc_racing_an_enqueue_leaves_the_job_pointed(
    exact_db: Database, enqueue_commits_first: bool, stage: str, collector: str
) -> None:
    db = exact_db
    queue = f"gc-{uuid.uuid4().hex[:8]}"
    now = T0
    _empty_but_pointed(db, queue, now)
    if stage == "mark-empty":
        # The claim that drained the queue marked its pointer empty already; start this
        # stage from a pointer not yet marked (as a store written before that rule has).
        later = (_pointer_vis(db, queue) or now) + 1
        db.transact(lambda tr: pointers.defer(tr, queue, later))
        assert read_queues(db, [queue])[queue].record_vis == later
    if stage == "delete":
        # The claim that drained the queue marked its pointer empty: once the grace has
        # passed, the racing collector's body deletes it.
        now += pointers.EMPTY_GRACE_MS
    now += 1

    job = prepare(queue, "t", "new", now=now)

    def enqueue_body(tr: Transaction) -> Any:
        return store_new(tr, job)

    gc_claims: list[Claim] = []

    def gc_body(tr: Transaction) -> Any:
        if collector == "collect":
            return pointers.collect_empty_pointer(tr, queue, now, 0)
        gc_claims[:] = claim_jobs(tr, queue, "gc", now, 1, LEASE_MS, uuid.uuid4().hex)
        return list(gc_claims)

    t_enqueue, t_gc = db.create_transaction(), db.create_transaction()
    enqueue_body(t_enqueue)
    gc_result = gc_body(t_gc)
    # Both bodies read the same snapshot: the collector saw an empty queue.
    if collector == "collect":
        assert gc_result is (stage == "delete")
    else:
        assert gc_result == []
    pairs = [(t_enqueue, enqueue_body), (t_gc, gc_body)]
    if not enqueue_commits_first:
        pairs.reverse()
    for tr, body in pairs:
        _commit_retrying(db, tr, body)

    check_pointer_invariant(db, [queue], now, "after the race")
    if gc_claims:
        # The claim lost the race, was retried, and found the new job: it holds it.
        assert [c.job_id for c in gc_claims] == [job.job.id]
        now += LEASE_MS  # its lease runs out: the job must be found again
    due = [q for _, q in db.transact(lambda tr: pointers.scan(tr.snapshot, now, limit=1000))]
    assert queue in due
    claims = quick.claim(db, queue, "w", now_ms=now)
    assert [c.job_id for c in claims] == [job.job.id]
