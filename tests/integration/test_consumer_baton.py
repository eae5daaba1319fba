"""Idle consumers: they do not all claim for each new job (the wake baton), and an idle
one's stall watch sleeps until there is work.

Two consumers share a file: one holds the baton and claims a stream of jobs one by one;
the other does not claim when woken while the holder does. A holder whose
slots are full hands the baton on, so the other picks up new work at once rather than
after its idle timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import keyspace
import quick
from consumer import runtime
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database
from quick.claim_rounds import ClaimRound


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with keyspace.open(f"sqlite:///{tmp_path / 'q.db'}") as opened:
        yield opened


@pytest.fixture
def no_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer without the baton waits longer for it than any of these tests takes."""
    monkeypatch.setattr(runtime, "FOLLOW_SECONDS", 30.0)


def _signalling_app() -> tuple[quick.App, threading.Event]:
    """An app whose ``noop`` job sets the event returned with it."""
    app = quick.App()
    ran = threading.Event()

    @app.job("noop")
    def noop(payload: Any, meta: quick.Meta) -> None:
        ran.set()

    return app, ran


class CountingConsumer(Consumer):
    """Counts its claim rounds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rounds = 0

    def _claim_round(self, limit: int, cursor: bytes | None, seed: float) -> ClaimRound:
        self.rounds += 1
        return super()._claim_round(limit, cursor, seed)


def test_idle_consumers_do_not_all_wake_for_each_job(db: Database, no_follow: None) -> None:
    app = quick.App()
    ran = threading.Semaphore(0)

    @app.job("noop")
    def noop(payload: Any, meta: quick.Meta) -> None:
        ran.release()

    jobs = 20

    async def main() -> list[int]:
        config = ConsumerConfig(concurrency=4, cron=False, max_idle=5.0)
        consumers = [CountingConsumer(db, app, config) for _ in range(2)]
        async with trio.open_nursery() as nursery:
            for consumer in consumers:
                await nursery.start(consumer.run)
            await trio.sleep(0.3)  # both idle
            before = [c.rounds for c in consumers]
            with trio.fail_after(30):
                for i in range(jobs):
                    quick.enqueue(db, "q", "noop", i)
                    await trio.to_thread.run_sync(ran.acquire)
                    await trio.sleep(0.01)
            rounds = [c.rounds - b for c, b in zip(consumers, before, strict=True)]
            for consumer in consumers:
                consumer.stop()
        return rounds

    rounds = trio.run(main)
    # The holder: a round that claims and one that re-arms its watch per job. The other
    # would run one per job too if it claimed when woken; it waits for the baton instead.
    assert min(rounds) <= 2, rounds
    assert sum(rounds) <= 2 * jobs + 4, rounds


def test_a_full_consumer_hands_the_baton_on(db: Database, no_follow: None) -> None:
    app = quick.App()
    release = threading.Event()
    started: list[int] = []

    @app.job("block")
    def block(payload: Any, meta: quick.Meta) -> None:
        started.append(payload)
        release.wait(30)

    async def main() -> None:
        # Fallbacks 30 s away: only the hand-off can start the second job in time.
        config = ConsumerConfig(concurrency=1, batch_size=1, cron=False, max_idle=30.0)
        consumers = [Consumer(db, app, config) for _ in range(2)]
        try:
            async with trio.open_nursery() as nursery:
                for consumer in consumers:
                    await nursery.start(consumer.run)
                await trio.sleep(0.3)
                with trio.fail_after(10):
                    quick.enqueue(db, "q", "block", 1)
                    while not started:
                        await trio.sleep(0.01)
                    quick.enqueue(db, "q2", "block", 2)
                    while len(started) < 2:
                        await trio.sleep(0.01)
                release.set()
                for consumer in consumers:
                    consumer.stop()
        finally:
            release.set()

    trio.run(main)
    assert sorted(started) == [1, 2]


async def _idle_then_one_job(
    consumer: Consumer,
    db: Any,
    ran: threading.Event,
    *,
    before_job: Callable[[], None] = lambda: None,
    linger: float = 0.0,
) -> None:
    """Run ``consumer`` idle for half a second, then one ``noop`` job; stop ``linger``
    seconds after it ran."""
    async with trio.open_nursery() as nursery:
        await nursery.start(consumer.run)
        await trio.sleep(0.5)
        before_job()
        quick.enqueue(db, "q", "noop", None)
        with trio.fail_after(10):
            await trio.to_thread.run_sync(ran.wait, 10)
        await trio.sleep(linger)
        consumer.stop()


def test_a_consumer_without_a_baton_still_claims(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: Any) -> str:
        raise quick.QuickError("no identity today")

    monkeypatch.setattr(runtime, "store_identity", broken)
    app, ran = _signalling_app()
    trio.run(_idle_then_one_job, Consumer(db, app, ConsumerConfig(cron=False)), db, ran)
    assert ran.is_set()


def test_idle_consumer_stall_watch_sleeps_until_work(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It counted stalled slots twenty times a second whether or not anything was held.
    counts: list[int] = []
    real = runtime.stalled

    def counted(*args: Any) -> int:
        counts.append(1)
        return real(*args)

    monkeypatch.setattr(runtime, "stalled", counted)
    app, ran = _signalling_app()
    idle: list[int] = []
    consumer = Consumer(db, app, ConsumerConfig(cron=False))

    async def main() -> None:
        await _idle_then_one_job(
            consumer, db, ran, before_job=lambda: idle.append(len(counts)), linger=0.3
        )

    trio.run(main)
    assert idle == [0]
    assert len(counts) > 0  # the job woke it
