"""How asyncio handlers should meet the trio consumer: a thread per consumer, or guest mode.

Three measurements, in one run (the machine may be shared: compare within a run):

* **Drain**: a real :class:`consumer.Consumer` drains ``--jobs`` no-op ``async def``
  jobs registered with ``loop="trio"``, then the same on asyncio (the consumer's
  asyncio loop in its own thread, :mod:`consumer.asyncio_loop`), alternating
  ``--rounds`` times on fresh stores; the median jobs/s of each and their ratio.
* **Round trip**: ``--calls`` no-op asyncio coroutines awaited one after another from
  trio, through the thread bridge and through trio's guest mode (trio hosted on an
  asyncio loop in the same thread, each call an asyncio task awaited through its done
  callback): microseconds per call.
* **Blocking handler**: an asyncio handler that blocks its loop for ``--block-ms``
  (a sync call inside ``async def``), beside a trio task that ticks every millisecond,
  as the consumer's lease keeper and claimer would: the longest gap between ticks.
  With the thread bridge the trio side does not notice; in guest mode it stops.

From the repository root::

    .venv/bin/python scripts/bench_asyncio_bridge.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

import quick
from consumer.asyncio_loop import AsyncioLoop
from consumer.runtime import Consumer, ConsumerConfig


async def _noop(payload: Any = None, meta: Any = None) -> None:
    return None


def drain_rate(loop: str, jobs: int, directory: Path) -> float:
    """Jobs per second for a consumer draining ``jobs`` no-op handlers on ``loop``."""
    app = quick.App()
    app.job("noop", loop=loop)(_noop)
    with quick.open(f"sqlite:///{directory / f'{loop}.db'}") as db:
        for start in range(0, jobs, 500):
            specs = [{"queue_id": f"q{i % 8}", "topic": "noop", "payload": i} for i in range(500)]
            quick.enqueue_many(db, specs[: jobs - start])

        async def main() -> float:
            consumer = Consumer(db, app, ConsumerConfig(concurrency=8, cron=False))
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                await nursery.start(consumer.run)
                while consumer.outcomes["completed"] < jobs:
                    await trio.sleep(0.005)
                elapsed = time.perf_counter() - started
                consumer.stop()
            return jobs / elapsed

        return trio.run(main)


def thread_round_trip(calls: int) -> float:
    """Microseconds per no-op call through :class:`AsyncioLoop` (trio in this thread)."""

    async def main() -> float:
        with AsyncioLoop() as bridge:
            await bridge.run(_noop)  # start the loop's thread
            started = time.perf_counter()
            for _ in range(calls):
                await bridge.run(_noop)
            return (time.perf_counter() - started) / calls * 1e6

    return trio.run(main)


def _guest(trio_main: Callable[[], Coroutine[Any, Any, float]]) -> float:
    """Run ``trio_main`` as trio's guest on an asyncio loop in this thread."""

    async def host() -> float:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[float] = loop.create_future()

        def finished(outcome: Any) -> None:
            done.set_result(outcome.unwrap())

        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=finished,
            host_uses_signal_set_wakeup_fd=True,
        )
        return await done

    return asyncio.run(host())


async def _guest_call(fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """In guest mode: run ``fn()`` as an asyncio task and wait for it from trio."""
    token = trio.lowlevel.current_trio_token()
    finished = trio.Event()
    task = asyncio.get_event_loop().create_task(fn())
    task.add_done_callback(lambda _: token.run_sync_soon(finished.set))
    await finished.wait()


def guest_round_trip(calls: int) -> float:
    """Microseconds per no-op call from trio to asyncio in guest mode."""

    async def trio_main() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await _guest_call(_noop)
        return (time.perf_counter() - started) / calls * 1e6

    return _guest(trio_main)


async def _longest_tick_gap(call: Callable[[], Any], block_s: float) -> float:
    """Run ``call()`` beside a 1 ms ticker; the ticker's longest gap in ms."""
    gaps: list[float] = []

    async def ticker(stop: trio.Event) -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await trio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def blocking() -> None:
        time.sleep(block_s)  # a sync call inside an async handler: blocks its loop

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker, stop)
        await trio.sleep(0.05)
        await call()(blocking)
        await trio.sleep(0.05)
        stop.set()
    return max(gaps) * 1000


def blocking_gaps(block_ms: int) -> tuple[float, float]:
    """(thread bridge, guest mode): the trio ticker's longest gap while a handler blocks."""

    async def with_thread() -> float:
        with AsyncioLoop() as bridge:
            return await _longest_tick_gap(lambda: bridge.run, block_ms / 1000)

    async def with_guest() -> float:
        return await _longest_tick_gap(lambda: _guest_call, block_ms / 1000)

    return trio.run(with_thread), _guest(with_guest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per drain")
    parser.add_argument("--rounds", type=int, default=3, help="drains of each kind")
    parser.add_argument("--calls", type=int, default=5000, help="round trips of each kind")
    parser.add_argument("--block-ms", type=int, default=200, help="how long a handler blocks")
    args = parser.parse_args(argv)
    rates: dict[str, list[float]] = {"trio": [], "asyncio": []}
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        for i in range(args.rounds):
            for loop in ("trio", "asyncio") if i % 2 == 0 else ("asyncio", "trio"):
                round_dir = Path(tmp) / f"{i}"
                round_dir.mkdir(exist_ok=True)
                rates[loop].append(drain_rate(loop, args.jobs, round_dir))
    trio_rate, asyncio_rate = (statistics.median(rates[k]) for k in ("trio", "asyncio"))
    print(f"drain, {args.jobs} no-op async jobs, concurrency 8, median of {args.rounds}:")
    print(f"  loop='trio'    {trio_rate:8.0f} jobs/s")
    print(f"  loop='asyncio' {asyncio_rate:8.0f} jobs/s  ({asyncio_rate / trio_rate:.2f}x)")
    thread_us = statistics.median(thread_round_trip(args.calls) for _ in range(3))
    guest_us = statistics.median(guest_round_trip(args.calls) for _ in range(3))
    print(f"round trip trio -> asyncio -> trio, {args.calls} sequential no-op calls:")
    print(f"  thread bridge  {thread_us:8.1f} us/call")
    print(f"  guest mode     {guest_us:8.1f} us/call")
    thread_gap, guest_gap = blocking_gaps(args.block_ms)
    print(f"an asyncio handler blocking its loop {args.block_ms} ms, trio's longest tick gap:")
    print(f"  thread bridge  {thread_gap:8.1f} ms")
    print(f"  guest mode     {guest_gap:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
