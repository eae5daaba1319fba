"""Fairness across tenants: a scanner walking the pointer index starves no queue."""

from __future__ import annotations

import random

import pytest

import quick
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick import pointers

pytestmark = pytest.mark.slow


def _fill(db: Database, queue: str, count: int) -> None:
    for start in range(0, count, 500):
        quick.enqueue_many(
            db,
            [
                {"queue_id": queue, "topic": "t", "payload": i}
                for i in range(start, min(count, start + 500))
            ],
        )


def test_fairness_small_queues_drain_before_a_fifth_of_the_big_one(
    engine: str, db: Database, space: Subspace
) -> None:
    if engine != "sqlite":
        pytest.skip("one engine is enough for this 11,000-job drain; the others run it slower")
    tag = space.prefix[1][:8]
    big, small = f"big-{tag}", [f"small-{tag}-{i}" for i in range(100)]
    _fill(db, big, 10_000)
    for queue in small:
        _fill(db, queue, 10)
    rng = random.Random(7)
    cursor: bytes | None = None
    big_done = 0
    remaining = set(small)
    while remaining:
        now = quick.jobs.now_ms()
        due = db.transact(
            lambda tr, c=cursor, n=now: pointers.scan(tr.snapshot, n, after=c, limit=20)
        )
        cursor = due[-1][0] if len(due) == 20 else None
        if not due:
            continue
        _, queue = rng.choice(due)
        claims = quick.claim(db, queue, "scanner", limit=10)
        for claim in claims:
            quick.complete(db, claim)
        if queue == big:
            big_done += len(claims)
        elif queue in remaining and sum(quick.queue_counts(db, queue).values()) == 0:
            remaining.discard(queue)
        assert big_done < 2_000, f"{len(remaining)} small queues still waiting"
    assert big_done < 2_000


def test_fairness_ready_job_beats_ten_thousand_future_ones(
    engine: str, db: Database, space: Subspace
) -> None:
    if engine == "faulty-sqlite":
        pytest.skip("the ordering does not depend on commit faults; sqlite covers it")
    queue = f"mixed-{space.prefix[1][:8]}"
    for start in range(0, 10_000, 1_000):
        quick.enqueue_many(
            db,
            [
                {"queue_id": queue, "topic": "t", "payload": i, "priority": 0, "delay": 3600}
                for i in range(start, start + 1_000)
            ],
        )
    quick.enqueue(db, queue, "t", "ready", priority=100)
    now = quick.jobs.now_ms()
    due = db.transact(lambda tr: pointers.scan(tr.snapshot, now, limit=1000))
    assert queue in {q for _, q in due}
    (claim,) = quick.claim(db, queue, "w", limit=1)
    assert claim.payload == "ready"
