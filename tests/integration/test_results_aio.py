"""``quick.aio.result`` on every engine, under asyncio and under trio: the same values and
errors as ``quick.result``, a timeout, and a cancelled waiter released at once."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import anyio
import pytest

import quick
import quick.aio
from keyspace.protocol import Database
from quick.testing import drain

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs under asyncio and under trio."""
    return str(request.param)


@pytest.fixture
def queue() -> str:
    return f"ra-{uuid.uuid4().hex[:8]}"


def make_app() -> quick.App:
    app = quick.App()

    @app.job("double")
    def double(payload: Any, meta: quick.Meta) -> Any:
        return payload * 2

    @app.job("fail", max_attempts=1)
    def fail(payload: Any, meta: quick.Meta) -> Any:
        raise KeyError(payload)

    @app.job("discard")
    def discard(payload: Any, meta: quick.Meta) -> Any:
        raise quick.Discard("stale")

    return app


async def test_aio_result_waits_for_the_job(db: Database, queue: str) -> None:
    job_id = await quick.aio.enqueue(db, queue, "double", 21)
    runner = threading.Timer(0.05, lambda: drain(db, make_app()))
    runner.start()
    try:
        assert await quick.aio.result(db, job_id, timeout=60) == 42
    finally:
        runner.join()
    assert await quick.aio.result(db, job_id) == 42  # finished: answered at once


async def test_aio_result_raises_as_the_sync_one(db: Database, queue: str) -> None:
    failed = await quick.aio.enqueue(db, queue, "fail", "k")
    discarded = await quick.aio.enqueue(db, queue, "discard", 0)
    cancelled = await quick.aio.enqueue(db, queue, "double", 1, delay=3600)
    await quick.aio.cancel(db, cancelled)
    drain(db, make_app())
    with pytest.raises(quick.JobDeadLettered, match="KeyError: 'k'"):
        await quick.aio.result(db, failed)
    with pytest.raises(quick.JobDiscarded, match="stale"):
        await quick.aio.result(db, discarded)
    with pytest.raises(quick.JobCancelled):
        await quick.aio.result(db, cancelled)
    with pytest.raises(quick.JobNotFound):
        await quick.aio.result(db, "never-enqueued")
    with pytest.raises(quick.InvalidArgument, match="job_id"):
        await quick.aio.result(db, "")
    with pytest.raises(quick.InvalidArgument, match="timeout"):
        await quick.aio.result(db, failed, timeout=-1)


async def test_aio_result_times_out_and_a_cancelled_waiter_is_released(
    db: Database, queue: str
) -> None:
    job_id = await quick.aio.enqueue(db, queue, "double", 1)
    with pytest.raises(quick.ResultTimeout):
        await quick.aio.result(db, job_id, timeout=0.05)
    with anyio.move_on_after(0.05) as scope:
        await quick.aio.result(db, job_id)  # no timeout: only the cancellation ends it
    assert scope.cancelled_caught
    drain(db, make_app())
    assert await quick.aio.result(db, job_id, timeout=0) == 2


async def test_aio_result_of_a_job_enqueued_in_an_async_transaction(
    db: Database, queue: str
) -> None:
    job_id = f"order-{uuid.uuid4().hex}"  # made before the retry loop

    async def place(tr: quick.aio.AsyncTransaction) -> None:
        tr.set(b"orders/" + job_id.encode(), b"placed")
        await quick.aio.enqueue(tr, queue, "double", 4, job_id=job_id)

    await quick.aio.transact(db, place)
    runner = threading.Timer(0.05, lambda: drain(db, make_app()))
    runner.start()
    try:
        assert await quick.aio.result(db, job_id, timeout=60) == 8
    finally:
        runner.join()
