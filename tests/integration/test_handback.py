"""A consumer whose every slot is held by a long job gives its waiting claims back, so an
idle consumer runs them, and claims nothing more until a slot frees."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database
from tests.waiting import until

SLOW_SECONDS = 2.0

pytestmark = pytest.mark.slow


def test_consumer_gives_back_claims_waiting_behind_long_jobs(db: Database) -> None:
    app = quick.App()
    ran: dict[str, list[str]] = {}

    @app.job("t")
    def handler(payload: Any, meta: quick.Meta) -> None:
        ran.setdefault(meta.job_id, []).append(meta.owner)
        if payload == "slow":
            time.sleep(SLOW_SECONDS)

    queue = f"q-{uuid.uuid4().hex[:8]}"  # the fdb engine shares one keyspace
    warm = quick.enqueue_many(
        db, [{"queue_id": queue, "topic": "t", "payload": i} for i in range(20)]
    )
    busy = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False, owner="busy"))
    idle = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False, owner="idle"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(busy.run)
            # Fast jobs first: the busy consumer learns a short handler time and claims
            # a whole batch at once from then on.
            await until(lambda: busy.outcomes["completed"] == len(warm), 30.0)
            slow = quick.enqueue_many(
                db, [{"queue_id": queue, "topic": "t", "payload": "slow"} for _ in range(2)]
            )
            await trio.sleep(0.005)
            fast = quick.enqueue_many(
                db, [{"queue_id": queue, "topic": "t", "payload": i} for i in range(10)]
            )
            # Both slots run a slow job; the fast ones claimed with them are given back.
            await until(lambda: busy.outcomes["released"] >= 1, 30.0)
            assert all(ran.get(job_id) == ["busy"] for job_id in slow)
            await nursery.start(idle.run)
            await until(
                lambda: all(
                    quick.job_state(db, j) is quick.JobState.COMPLETED for j in slow + fast
                ),
                30.0,
            )
            busy.stop()
            idle.stop()
        assert any(ran[j] == ["idle"] for j in fast)

    trio.run(main)
    assert busy.outcomes["lease_lost"] == idle.outcomes["lease_lost"] == 0
    assert sum(len(owners) for owners in ran.values()) == len(ran) == 32


def test_consumer_claims_for_a_slot_freed_beside_a_long_job(db: Database) -> None:
    app = quick.App()
    ended: list[Any] = []

    @app.job("t")
    def handler(payload: Any, meta: quick.Meta) -> None:
        if isinstance(payload, float):
            time.sleep(payload)
        ended.append(payload)

    queue = f"q-{uuid.uuid4().hex[:8]}"
    warm = quick.enqueue_many(
        db, [{"queue_id": queue, "topic": "t", "payload": i} for i in range(20)]
    )
    consumer = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: consumer.outcomes["completed"] == len(warm), 30.0)
            ended.clear()
            # One slot runs a long job, the other a shorter one; once the shorter one
            # ends, its slot runs the short jobs while the long one is still running.
            quick.enqueue_many(
                db,
                [
                    {"queue_id": queue, "topic": "t", "payload": 2 * SLOW_SECONDS},
                    {"queue_id": queue, "topic": "t", "payload": SLOW_SECONDS / 2},
                ],
            )
            await trio.sleep(0.005)
            quick.enqueue_many(
                db, [{"queue_id": queue, "topic": "t", "payload": i} for i in range(10)]
            )
            await until(lambda: len(ended) == 12, 30.0)
            consumer.stop()

    trio.run(main)
    assert ended[-1] == 2 * SLOW_SECONDS, f"short jobs waited for the long one: {ended}"
