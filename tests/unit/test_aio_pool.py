"""The async pool: a call stuck in a worker does not hold up the calls queued behind it,
and a caller gets a call's exception as its own (asyncio and trio)."""

from __future__ import annotations

import threading

import anyio
import pytest

from quick import aio_pool
from quick.aio_waiting import run_blocking

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_aio_pool_a_stuck_call_does_not_hold_up_the_next() -> None:
    release = threading.Event()
    started = threading.Event()

    def stuck() -> str:
        started.set()
        release.wait(30)
        return "stuck"

    results: list[str] = []
    try:
        async with anyio.create_task_group() as group:

            async def first() -> None:
                results.append(await run_blocking(stuck))

            group.start_soon(first)
            while not started.is_set():
                await anyio.sleep(0.01)
            await anyio.sleep(aio_pool.STALL_SECONDS * 1.5)  # the worker counts as stuck now
            with anyio.fail_after(20):  # a safety net, not a speed assertion
                results.append(await run_blocking(lambda: "next"))
            release.set()
    finally:
        release.set()
    assert results == ["next", "stuck"]


async def test_aio_pool_hands_back_the_calls_exception() -> None:
    def fail() -> None:
        raise KeyError("from the worker")

    with pytest.raises(KeyError, match="from the worker"):
        await run_blocking(fail)


async def test_aio_pool_skips_a_call_whose_caller_stopped_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aio_pool, "STALL_SECONDS", 60.0)  # no extra worker takes it meanwhile
    release = threading.Event()
    started = threading.Event()
    ran: list[int] = []

    def stuck() -> None:
        started.set()
        release.wait(30)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(run_blocking, stuck)
            while not started.is_set():
                await anyio.sleep(0.01)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await run_blocking(ran.append, 1)  # queued, then cancelled while queued
            assert scope.cancelled_caught
            release.set()
        await run_blocking(ran.append, 2)  # runs after the cancelled one would have
    finally:
        release.set()
    assert ran == [2]
