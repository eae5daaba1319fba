"""A consumer whose store stops answering keeps its leases, records what ran, and resumes.

The consumer's database is the fault injector with an outage window (every round trip
blocks, then fails with 1031 at the transaction timeout); the test reads the store
through the plain engine, which answers throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.faults import FaultyDatabase, Window
from tests.waiting import until


def test_consumer_outage_keeps_the_lease_of_a_running_job_and_records_it(
    tmp_path: Path,
) -> None:
    inner = quick.open(f"sqlite:///{tmp_path / 'q.db'}")
    job_id = quick.enqueue(inner, "q", "slow", None)
    app = quick.App()
    started = trio.Event()

    @app.job("slow", loop="trio")
    async def slow(payload: Any, meta: quick.Meta) -> None:
        started.set()
        await trio.sleep(5.0)  # through the whole outage and past the first lease

    db = FaultyDatabase(inner, outage=Window(start=0.6, duration=2.0), timeout_ms=300)
    # Renewals are due from 1.5 s into the 4.5 s lease: those in the outage fail, and
    # the handler outlives the lease, so it completes only if a renewal after the outage
    # (retried at most 1.5 s apart) kept the job.
    config = ConsumerConfig(lease_ms=4500, concurrency=2, max_idle=0.1)

    async def main() -> Consumer:
        consumer = Consumer(db, app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await started.wait()
            await until(lambda: consumer.outcomes["completed"] == 1, 15)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes == {"completed": 1}, "not lost, not run twice"
    assert quick.job_state(inner, job_id) is quick.JobState.COMPLETED
    assert db.injected[1031] > 0, "the outage was met"
    assert not consumer.patience.outage
    inner.close()
