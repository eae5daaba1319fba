"""``quick.cancel`` on a running job, and ``meta.progress``, through a real consumer.

The consumer's lease keeper carries both: the renewal that reads each held job finds
the cancel mark and stops the handler (an async one is cancelled, a sync one sees
``meta.cancelled()``), and writes the progress a handler recorded. Leases here are
short (600 ms: the keeper renews every 200 ms), so the news arrives quickly.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import trio

import quick
from consumer.keeper import Held, LeaseKeeper
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database
from quick.jobs import now_ms
from quick.progress import Progress
from tests.asyncio_helpers import register_waiter
from tests.waiting import until

LEASE_MS = 600


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


def _config(**changes: Any) -> ConsumerConfig:
    return ConsumerConfig(**{"concurrency": 2, "lease_ms": LEASE_MS, "cron": False, **changes})


def _cancel_while_running(
    db: Database, app: quick.App, queue: str, topic: str, started: threading.Event
) -> tuple[Consumer, str, bool]:
    """Enqueue one ``topic`` job, cancel it once its handler started, and run the
    consumer until the job settled; the consumer, the job id and what cancel answered."""
    job = quick.enqueue(db, queue, topic, None)
    answered: list[bool] = []

    async def main() -> Consumer:
        consumer = Consumer(db, app, _config())
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(started.is_set, 30.0)
            answered.append(quick.cancel(db, job))
            await until(lambda: sum(consumer.outcomes.values()) >= 1, 30.0)
            consumer.stop()
        return consumer

    return trio.run(main), job, answered[0]


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_cancel_running_async_handler_is_cancelled_and_ends_cancelled(
    db: Database, tag: str, loop: str
) -> None:
    app = quick.App()
    started = threading.Event()
    seen: list[str] = []

    register_waiter(app, "slow", started, seen, loop=loop)
    began = time.monotonic()
    consumer, job, answered = _cancel_while_running(db, app, f"{tag}-q", "slow", started)
    assert answered is True
    assert time.monotonic() - began < 30  # not the handler's 60 s: it was cut short
    assert seen == ["cancelled"]
    assert consumer.outcomes == {"cancelled": 1}
    assert quick.job_state(db, job) is quick.JobState.CANCELLED
    assert quick.get_job(db, job) is None  # finished: never retried
    assert quick.queue_counts(db, f"{tag}-q") == {
        "scheduled": 0,
        "ready": 0,
        "leased": 0,
        "dead": 0,
    }


def test_cancel_running_sync_handler_sees_it_and_its_result_is_discarded(
    db: Database, tag: str
) -> None:
    app = quick.App()
    started = threading.Event()
    seen: list[bool] = []

    @app.job("poll", max_attempts=1)
    def poll(payload: Any, meta: quick.Meta) -> str:
        started.set()
        deadline = time.monotonic() + 30
        while not meta.cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(meta.cancelled())
        return "a result nobody keeps"

    consumer, job, answered = _cancel_while_running(db, app, f"{tag}-q", "poll", started)
    assert answered is True
    assert seen == [True]
    assert consumer.outcomes == {"cancelled": 1}
    assert quick.job_state(db, job) is quick.JobState.CANCELLED


def test_cancel_running_sync_handler_that_ignores_it_still_ends_cancelled(
    db: Database, tag: str
) -> None:
    app = quick.App()
    started = threading.Event()
    release = threading.Event()

    @app.job("deaf", max_attempts=1)
    def deaf(payload: Any, meta: quick.Meta) -> None:
        started.set()
        release.wait(30)
        raise ValueError("would have been retried")

    job = quick.enqueue(db, f"{tag}-q", "deaf", None)

    async def main() -> Consumer:
        consumer = Consumer(db, app, _config())
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(started.is_set, 30.0)
            assert quick.cancel(db, job) is True
            assert quick.cancel(db, job) is True  # again: the same answer, one mark
            await trio.sleep(0.1)
            release.set()
            await until(lambda: sum(consumer.outcomes.values()) >= 1, 30.0)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes == {"cancelled": 1}
    assert quick.job_state(db, job) is quick.JobState.CANCELLED
    assert quick.list_dead(db, f"{tag}-q") == []


def test_cancel_running_job_whose_holder_died_never_starts_again(db: Database, tag: str) -> None:
    app = quick.App()
    ran: list[str] = []

    @app.job("t")
    def handler(payload: Any, meta: quick.Meta) -> None:
        ran.append(meta.job_id)

    queue = f"{tag}-q"
    job = quick.enqueue(db, queue, "t", None)
    (claim,) = quick.claim(db, queue, "crashed", lease_ms=300)
    assert quick.cancel(db, job) is True  # marked; then its holder dies
    assert quick.job_state(db, job) is quick.JobState.LEASED

    async def main() -> Consumer:
        await trio.sleep(max(0, claim.lease_until_ms - now_ms()) / 1000 + 0.05)
        consumer = Consumer(db, app, _config())
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: sum(consumer.outcomes.values()) >= 1, 30.0)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    assert ran == []
    assert consumer.outcomes == {"cancelled": 1}
    assert quick.job_state(db, job) is quick.JobState.CANCELLED


def test_cancel_waiting_job_keeps_its_contract(db: Database, tag: str) -> None:
    queue = f"{tag}-q"
    job = quick.enqueue(db, queue, "t", None, delay=60)
    assert quick.cancel(db, job) is True
    assert quick.job_state(db, job) is quick.JobState.CANCELLED
    assert quick.cancel(db, job) is True
    assert quick.cancel(db, "no-such-job") is False
    running = quick.enqueue(db, queue, "t", None)
    quick.claim(db, queue, "w")
    with pytest.raises(quick.JobRunning):
        quick.operations.cancel_waiting(db, running)


def test_progress_is_written_by_the_keeper_and_readable(db: Database, tag: str) -> None:
    app = quick.App()
    recorded = threading.Event()
    release = threading.Event()

    @app.job("steps")
    def steps(payload: Any, meta: quick.Meta) -> None:
        meta.progress(0.25, "first quarter")
        meta.progress(0.5, "half way")  # the latest wins
        recorded.set()
        release.wait(30)

    queue = f"{tag}-q"
    job = quick.enqueue(db, queue, "steps", None)

    def written() -> Progress | None:
        found = quick.get_job(db, job)
        return None if found is None else found.progress

    async def main() -> Consumer:
        # A long lease: the write is not a renewal that was due anyway.
        consumer = Consumer(db, app, _config(lease_ms=30_000))
        consumer.keeper.lease_ms = 600  # ... but the keeper looks every 200 ms
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(recorded.is_set, 30.0)
            await until(lambda: written() is not None, 30.0)
            found = written()
            assert found is not None
            assert (found.fraction, found.text) == (0.5, "half way")
            release.set()
            await until(lambda: consumer.outcomes["completed"] == 1, 30.0)
            consumer.stop()
        return consumer

    trio.run(main)
    assert quick.job_state(db, job) is quick.JobState.COMPLETED


def test_progress_unused_costs_no_transaction(db: Database, tag: str) -> None:
    calls: list[str] = []

    class CountingBridge:
        async def call_db(self, fn: Any, *args: Any) -> Any:
            calls.append(fn.__name__)
            return await trio.to_thread.run_sync(fn, db, *args)

    queue = f"{tag}-q"
    quick.enqueue(db, queue, "t", None)
    (claim,) = quick.claim(db, queue, "w", lease_ms=30_000)
    keeper = LeaseKeeper(CountingBridge(), 30_000)  # type: ignore[arg-type]
    held = Held(claim, None)
    keeper.add([held])
    trio.run(keeper.renew, now_ms())
    assert calls == []  # a young lease, no progress: nothing to write
    meta = quick.outcomes.meta_for(claim, held.signals)
    meta.progress(1, "done")
    trio.run(keeper.renew, now_ms())
    assert calls == ["_renew"]
    stored = quick.get_job(db, claim.job_id)
    assert stored is not None
    assert stored.progress is not None
    assert (stored.progress.fraction, stored.progress.text) == (1.0, "done")
    trio.run(keeper.renew, now_ms())
    assert calls == ["_renew"]  # written once


def test_cancel_running_reaches_the_keeper_through_its_watch_not_the_next_renewal(
    db: Database, tag: str
) -> None:
    app = quick.App()
    started = threading.Event()
    seen: list[str] = []
    register_waiter(app, "slow", started, seen)
    job = quick.enqueue(db, f"{tag}-q", "slow", None)

    async def main() -> Consumer:
        # A 30 s lease: the first renewal that would read the mark comes after 20 s.
        consumer = Consumer(db, app, _config(lease_ms=30_000))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(started.is_set, 30.0)
            quick.cancel(db, job)
            await until(lambda: consumer.outcomes["cancelled"] == 1, 15.0)
            consumer.stop()
        return consumer

    trio.run(main)
    assert seen == ["cancelled"]
    assert quick.job_state(db, job) is quick.JobState.CANCELLED


def test_cancel_running_workflow_step_fails_its_run_instead_of_leaving_it_waiting(
    db: Database, tag: str
) -> None:
    import workflow
    from quick.outcomes import CANCELLED_ERROR
    from quick.testing import drain

    app = quick.App()
    ran: list[int] = []

    @app.job("self-cancelling")
    def step(payload: Any, meta: quick.Meta) -> str:
        ran.append(meta.attempt)
        assert quick.cancel(db, meta.job_id) is True  # while it runs: marked
        return "discarded"

    wf = workflow.Workflow(f"cancel-{tag}").step("a", topic="self-cancelling", max_attempts=3)
    queue = f"{tag}-wf"
    run_id = workflow.start_run(db, wf, None, queue_id=queue)
    assert drain(db, app, queue_id=queue) == {"cancelled": 1}
    view = workflow.inspect_run(db, run_id)
    assert ran == [1]  # not retried
    assert view.status == "failed"
    assert view.steps["a"].error == CANCELLED_ERROR
