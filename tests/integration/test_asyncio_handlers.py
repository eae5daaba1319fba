"""asyncio handlers in the consumer: a real TCP server, timeouts, lease loss, graceful stop.

An ``async def`` handler runs on the consumer's asyncio loop unless registered with
``loop="trio"`` (:mod:`consumer.asyncio_loop`). The handlers here use asyncio only
(``asyncio.open_connection``, ``asyncio.sleep``, ``asyncio.Event``), which fail under
trio, so each test also shows the handler really ran on asyncio.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database
from quick.jobs import now_ms
from quick.testing import drain
from tests.asyncio_helpers import EchoServer, register_waiter
from tests.waiting import until


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


def _run(db: Database, app: quick.App, done: Any, config: ConsumerConfig) -> Consumer:
    """Run a consumer until ``done(consumer)`` is true, then stop it gracefully."""

    async def main() -> Consumer:
        consumer = Consumer(db, app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: done(consumer), 30.0)
            consumer.stop()
        return consumer

    return trio.run(main)


def test_asyncio_handler_talks_to_a_real_asyncio_server(
    db: Database, tag: str, echo: EchoServer
) -> None:
    app = quick.App()
    replies: dict[str, str] = {}
    loops: set[int] = set()

    @app.job("echo")
    async def talk(payload: str, meta: quick.Meta) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", echo.port)
        writer.write(payload.encode() + b"\n")
        await writer.drain()
        replies[meta.job_id] = (await reader.readline()).decode().strip()
        writer.close()
        await writer.wait_closed()
        loops.add(id(asyncio.get_running_loop()))

    queue = f"{tag}-q"
    jobs = {quick.enqueue(db, queue, "echo", f"hello {i}"): f"HELLO {i}" for i in range(20)}
    config = ConsumerConfig(concurrency=4, cron=False)
    consumer = _run(db, app, lambda c: c.outcomes["completed"] >= 20, config)
    assert replies == jobs
    assert echo.served >= 20
    assert len(loops) == 1  # every job of the consumer ran on its one asyncio loop
    assert {quick.job_state(db, job) for job in jobs} == {quick.JobState.COMPLETED}
    assert consumer.outcomes["completed"] >= 20


def test_asyncio_handler_timeout_cancels_it_and_fails_the_attempt(db: Database, tag: str) -> None:
    app = quick.App()
    seen: list[str] = []

    @app.job("stuck", timeout=0.2, max_attempts=1)
    async def stuck(payload: Any, meta: quick.Meta) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    queue = f"{tag}-q"
    job = quick.enqueue(db, queue, "stuck", None)
    config = ConsumerConfig(concurrency=1, cron=False)
    _run(db, app, lambda c: c.outcomes["dead_lettered"] == 1, config)
    assert seen == ["cancelled"]  # the asyncio task was cancelled, not abandoned
    (dead,) = quick.list_dead(db, queue)
    assert dead.job_id == job
    assert dead.error == "TimeoutError: timed out after 0.2 s"


def test_asyncio_handler_lease_loss_cancels_it(db: Database, tag: str) -> None:
    app = quick.App()
    started = threading.Event()
    seen: list[str] = []
    register_waiter(app, "slow", started, seen)
    queue = f"{tag}-q"
    job = quick.enqueue(db, queue, "slow", None)
    thief: list[quick.Claim] = []

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, lease_ms=300, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(started.is_set, 30.0)
            later = now_ms() + 60_000  # a consumer whose clock says the lease ran out
            thief.extend(quick.claim(db, queue, "thief", lease_ms=60_000, now_ms=later))
            await until(lambda: consumer.outcomes["lease_lost"] == 1, 30.0)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes == {"lease_lost": 1}
    assert seen == ["cancelled"]
    held = quick.get_job(db, job)
    assert held is not None
    assert held.owner == "thief"


def test_asyncio_handler_graceful_stop_lets_it_finish_then_cancels_past_the_grace(
    db: Database, tag: str
) -> None:
    app = quick.App()
    running = threading.Event()
    seen: list[str] = []

    @app.job("short")
    async def short(payload: Any, meta: quick.Meta) -> None:
        running.set()
        await asyncio.sleep(0.3)
        seen.append("short done")

    @app.job("long")
    async def long(payload: Any, meta: quick.Meta) -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("long cancelled")
            raise

    async def stop_while_running(topic: str, grace: float) -> Consumer:
        running.clear()
        queue = f"{tag}-{topic}"
        quick.enqueue(db, queue, topic, None)
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, cron=False, grace=grace))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(running.is_set, 30.0)
            consumer.stop()
        return consumer

    finished = trio.run(stop_while_running, "short", 10.0)
    assert finished.outcomes == {"completed": 1}
    assert seen == ["short done"]
    cut = trio.run(stop_while_running, "long", 0.2)
    assert seen == ["short done", "long cancelled"]
    assert cut.outcomes["completed"] == 0
    (job,) = quick.list_jobs(db, f"{tag}-long")  # still leased: it runs again later
    assert job.state is quick.JobState.LEASED


def test_asyncio_handler_error_and_return_value_reach_the_settlement(
    db: Database, tag: str
) -> None:
    app = quick.App()

    @app.job("broken", max_attempts=1)
    async def broken(payload: Any, meta: quick.Meta) -> None:
        await asyncio.sleep(0)
        raise ValueError("nope")

    @app.job("selfcancel", max_attempts=1)
    async def selfcancel(payload: Any, meta: quick.Meta) -> None:
        raise asyncio.CancelledError  # not trio's cancellation: a failed attempt

    queue = f"{tag}-q"
    quick.enqueue(db, queue, "broken", None)
    quick.enqueue(db, queue, "selfcancel", None)
    config = ConsumerConfig(concurrency=2, cron=False)
    _run(db, app, lambda c: c.outcomes["dead_lettered"] == 2, config)
    errors = sorted(dead.error for dead in quick.list_dead(db, queue))
    assert errors == ["RuntimeError: the asyncio handler was cancelled", "ValueError: nope"]


def test_asyncio_loop_rule_and_bad_loop_values() -> None:
    app = quick.App()

    @app.job("a")
    async def on_asyncio(payload: Any, meta: quick.Meta) -> None: ...

    @app.job("t", loop="trio")
    async def on_trio(payload: Any, meta: quick.Meta) -> None: ...

    @app.job("s")
    def plain(payload: Any, meta: quick.Meta) -> None: ...

    loops = {topic: app.config(topic).loop for topic in ("a", "t", "s")}  # type: ignore[union-attr]
    assert loops == {"a": "asyncio", "t": "trio", "s": None}
    for bad in ("curio", "", "Trio", 3):
        with pytest.raises(quick.InvalidArgument) as refused:
            app.job("x", loop=bad)  # type: ignore[arg-type]
        assert refused.value.field == "loop"
    with pytest.raises(quick.InvalidArgument, match="async def") as refused:
        app.job("y", loop="trio")(plain)
    assert refused.value.field == "loop"
    assert app.config("y") is None  # nothing registered


def test_asyncio_handler_runs_under_drain(quick_db: Database) -> None:
    app = quick.App()
    ran: list[str] = []

    @app.job("a")
    async def on_asyncio(payload: Any, meta: quick.Meta) -> None:
        await asyncio.sleep(0)
        ran.append(payload)

    @app.job("stuck", timeout=0.05, max_attempts=1)
    async def stuck(payload: Any, meta: quick.Meta) -> None:
        await asyncio.sleep(10)

    quick.enqueue(quick_db, "q", "a", "x")
    quick.enqueue(quick_db, "q", "stuck", None)
    assert drain(quick_db, app) == {"completed": 1, "dead_lettered": 1}
    assert ran == ["x"]
