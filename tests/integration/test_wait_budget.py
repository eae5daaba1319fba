"""A consumer whose recording is slow claims no more than its slots start within a third
of the lease (:func:`consumer.sizing.wait_budget`), however fast its handlers are.

The store takes 150 ms for each commit that writes (``?latency=commit:150``, as a
loaded store might), the handlers 2 ms: a slice of about ten jobs is recorded in
150 ms, so a job costs its slot about 17 ms, and four slots start about 80 claims in a
third of a 1.2 s lease. By their handler time alone the consumer would claim its whole
batch of 200 at once, and claims at the back of it would wait past the keeper's first
renewal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from tests.waiting import until

LEASE_MS = 1_200
BATCH = 200


def test_consumer_with_slow_recording_holds_only_what_starts_within_its_lease(
    tmp_path: Path,
) -> None:
    app = quick.App()

    @app.job("quick-job")
    def handler(payload: Any, meta: quick.Meta) -> None:
        time.sleep(0.002)

    with quick.open(f"sqlite:///{tmp_path / 'slow.db'}?latency=commit:150") as db:
        jobs = 3 * BATCH
        for first in range(0, jobs, BATCH):
            specs = [
                {"queue_id": "q", "topic": "quick-job", "payload": n}
                for n in range(first, first + BATCH)
            ]
            quick.enqueue_many(db, specs)
        held: list[int] = []

        async def main() -> Consumer:
            config = ConsumerConfig(concurrency=4, lease_ms=LEASE_MS, batch_size=BATCH, cron=False)
            consumer = Consumer(db, app, config)
            async with trio.open_nursery() as nursery:
                await nursery.start(consumer.run)

                async def sample() -> None:
                    while True:
                        held.append(len(consumer.keeper))
                        await trio.sleep(0.005)

                nursery.start_soon(sample)
                await until(lambda: consumer.outcomes["completed"] >= jobs, 60.0)
                consumer.stop()
                nursery.cancel_scope.cancel()
            return consumer

        consumer = trio.run(main)
    # No claim waited so long that it was dropped unstarted (its lease nearly over).
    assert consumer.outcomes == {"completed": jobs}
    # Waiting claims within the budget (about 80), plus the slices running and recording
    # (up to 40); by handler time alone the first full claim brings all 200.
    assert max(held) < 150, f"held up to {max(held)} claims at once"
