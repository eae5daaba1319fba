"""The trio consumer: handlers of every kind, lease loss, timeouts, graceful stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.codec import pack_value, unpack_value
from keyspace.layout import queue_keys
from keyspace.protocol import Database, Transaction


def _db(tmp_path: Path) -> Database:
    return quick.open(f"sqlite:///{tmp_path / 'c.db'}")


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def test_consumer_runs_sync_async_and_transactional_handlers(tmp_path: Path) -> None:
    db = _db(tmp_path)
    app = quick.App()
    seen: list[Any] = []

    @app.job("sync")
    def sync_handler(payload: Any, meta: quick.Meta) -> None:
        seen.append(("sync", payload))

    @app.job("async")
    async def async_handler(payload: Any, meta: quick.Meta) -> None:
        await trio.sleep(0)
        seen.append(("async", payload))

    @app.job("tx")
    def tx_handler(tr: Transaction, payload: Any, meta: quick.Meta) -> None:
        tr.set(b"effect/" + meta.job_id.encode(), b"done")

    @app.job("broken", max_attempts=1)
    def broken(payload: Any, meta: quick.Meta) -> None:
        raise ValueError("nope")

    for i in range(5):
        for topic in ("sync", "async", "tx", "broken"):
            quick.enqueue(db, f"tenant-{i}", topic, i)

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=4, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await _until(lambda: sum(consumer.outcomes.values()) == 20)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes == {"completed": 15, "dead_lettered": 5}
    assert sorted(seen) == sorted(
        [("sync", i) for i in range(5)] + [("async", i) for i in range(5)]
    )
    effects = db.transact(lambda tr: tr.get_range_startswith(b"effect/"))
    assert len(effects) == 5
    assert len(quick.list_dead(db)) == 5


def test_consumer_lease_loss_cancels_the_handler(tmp_path: Path) -> None:
    db = _db(tmp_path)
    app = quick.App()
    started, finished = trio.Event(), []

    @app.job("slow")
    async def slow(payload: Any, meta: quick.Meta) -> None:
        started.set()
        await trio.sleep(30)
        finished.append(meta.job_id)

    job = quick.enqueue(db, "q", "slow", None)

    def steal(tr: Transaction) -> None:
        key = queue_keys("q").job(job)
        record = dict(unpack_value(tr.get(key)))
        record["k"] = "someone-else"
        tr.set(key, pack_value(record))

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, lease_ms=300, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await started.wait()
            db.transact(steal)
            await _until(lambda: consumer.outcomes["lease_lost"] == 1)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes == {"lease_lost": 1}
    assert finished == []
    assert quick.job_state(db, job) is quick.JobState.LEASED


def test_consumer_timeout_counts_as_a_failed_attempt(tmp_path: Path) -> None:
    db = _db(tmp_path)
    app = quick.App()

    @app.job("stuck", timeout=0.05, max_attempts=1)
    async def stuck(payload: Any, meta: quick.Meta) -> None:
        await trio.sleep(10)

    job = quick.enqueue(db, "q", "stuck", None)

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await _until(lambda: consumer.outcomes["dead_lettered"] == 1)
            consumer.stop()

    trio.run(main)
    (dead,) = quick.list_dead(db, "q")
    assert dead.job_id == job
    assert dead.error.startswith("TimeoutError")


def test_consumer_stop_lets_running_jobs_finish_and_leaves_the_rest(tmp_path: Path) -> None:
    db = _db(tmp_path)
    app = quick.App()
    release = trio.Event()
    running = trio.Event()

    @app.job("wait")
    async def wait(payload: Any, meta: quick.Meta) -> None:
        running.set()
        await release.wait()

    for i in range(10):
        quick.enqueue(db, "q", "wait", i)

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, cron=False, grace=5))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await running.wait()
            consumer.stop()
            await trio.sleep(0.05)
            release.set()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes["completed"] == 1
    assert quick.queue_counts(db, "q") == {"scheduled": 0, "ready": 9, "leased": 0, "dead": 0}
