"""Results across processes: a caller waiting in ``quick.result`` (sync, asyncio, trio) is
woken by a real ``quick worker`` process finishing the job, through a watch."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

import quick
import quick.aio
from keyspace.protocol import Database
from tests.acceptance.processes import start_worker, stop_worker, wait_until

APP = "tests.acceptance.results_app:app"


class Counting:
    """The store, counting the transactions run through it (a polling wait makes many)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.transactions = 0

    def transact(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.transactions += 1
        return self.db.transact(fn, *args, **kwargs)


def test_result_waiter_is_woken_by_a_worker_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        job_id = quick.enqueue(db, "tenant-1", "add", [1, 2, 3])
        failing = quick.enqueue(db, "tenant-1", "fail", "x")
        counting = Counting(db)
        got: list[Any] = []
        waiter = threading.Thread(
            target=lambda: got.append(quick.result(counting, job_id, timeout=120))  # type: ignore[arg-type]
        )
        waiter.start()
        wait_until(lambda: counting.transactions >= 1, 30, "the waiter's first look")
        worker = start_worker(url, tmp_path / "out.txt", APP)
        try:
            waiter.join(120)
            assert got == [{"sum": 6, "job": job_id}]
            # One look that found the job pending and set the watch, one after it fired
            # (a spurious wake-up or two at most): no polling while the worker started.
            assert counting.transactions <= 4
            with pytest.raises(quick.JobDeadLettered) as dead:
                quick.result(db, failing, timeout=120)
            assert dead.value.error == "RuntimeError: failed on x"
        finally:
            stop_worker(worker)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_async_result_waiter_is_woken_by_a_worker_process(tmp_path: Path, loop: str) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        job_id = quick.enqueue(db, "tenant-2", "async", 5)
        ticks = [0]

        async def wait_for_it() -> Any:
            worker = start_worker(url, tmp_path / "out.txt", APP)
            try:
                return await quick.aio.result(db, job_id, timeout=120)
            finally:
                stop_worker(worker)

        if loop == "asyncio":

            async def main_asyncio() -> Any:
                async def tick() -> None:
                    while True:  # the loop stays free while the result is awaited
                        ticks[0] += 1
                        await asyncio.sleep(0.01)

                ticker = asyncio.create_task(tick())
                try:
                    return await wait_for_it()
                finally:
                    ticker.cancel()

            value = asyncio.run(main_asyncio())
        else:

            async def main_trio() -> Any:
                async with trio.open_nursery() as nursery:

                    async def tick() -> None:
                        while True:
                            ticks[0] += 1
                            await trio.sleep(0.01)

                    nursery.start_soon(tick)
                    found = await wait_for_it()
                    nursery.cancel_scope.cancel()
                    return found

            value = trio.run(main_trio)
        assert value == ["async", 5]
        assert ticks[0] > 1
