"""Async enqueue on the embedded engine: a loop that keeps ticking, and the throughput.

Two measurements, in one run:

* **Concurrency**: ``--concurrent`` (10,000) ``quick.aio.enqueue`` calls started on one
  event loop (``--spawn-chunk`` at a time, yielding between, as requests arrive),
  beside a ticker task that sleeps ``--tick-ms`` and records the longest gap between
  its wake-ups: how long the loop was ever kept from running it. Full garbage
  collections stop every thread of a process alike, and 10,000 live tasks make them
  long, so the gap is also given less the collections' time (from ``gc.callbacks``).
* **Floor** (asyncio): the same burst of tasks, each only hopping to a thread with
  ``asyncio.to_thread`` and back: the longest gap any asyncio code with that many
  tasks in flight sees, garbage collections included.
* **Throughput**: rounds that alternate the sync path (``quick.enqueue`` in a loop,
  one thread) with the async one (``--batch`` concurrent ``quick.aio.enqueue`` calls,
  spawned with the loop's own task group: ``asyncio.TaskGroup`` or a trio nursery),
  each on a fresh store, so both see the same machine load; the median rates and their
  ratio are printed.

The machine may be shared: compare the two paths only within one run. From the
repository root::

    .venv/bin/python scripts/bench_aio.py                    # about half a minute
    .venv/bin/python scripts/bench_aio.py --backend trio
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

import quick
import quick.aio


class GcClock:
    """When full (generation 2) garbage collections ran: (start, stop) perf_counter pairs."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started = 0.0
        gc.callbacks.append(self.observe)

    def observe(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((self._started, time.perf_counter()))

    def within(self, begin: float, end: float) -> float:
        """Seconds of collections inside [begin, end] (timed after the fact: the stop
        callback may run after another thread has already resumed)."""
        return sum(max(0.0, min(end, b) - max(begin, a)) for a, b in self.pauses)


async def spawn_all(
    backend: str, count: int, one: Callable[[int], Awaitable[None]], chunk: int
) -> None:
    """``one(n)`` for every n < count, concurrently, yielding to the loop every ``chunk``."""
    if backend == "asyncio":
        async with asyncio.TaskGroup() as group:
            for n in range(count):
                group.create_task(one(n))  # type: ignore[arg-type]
                if n % chunk == chunk - 1:
                    await asyncio.sleep(0)
    else:
        async with trio.open_nursery() as nursery:
            for n in range(count):
                nursery.start_soon(one, n)
                if n % chunk == chunk - 1:
                    await trio.sleep(0)


def sleeper(backend: str) -> Callable[[float], Awaitable[None]]:
    return asyncio.sleep if backend == "asyncio" else trio.sleep


def run(backend: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    if backend == "asyncio":
        return asyncio.run(fn(*args))  # type: ignore[arg-type]
    return trio.run(fn, *args)


async def enqueue_one(db: quick.Database, n: int) -> None:
    await quick.aio.enqueue(db, f"tenant-{n % 50}", "bench", {"n": n})


async def thread_hop(_: quick.Database, n: int) -> None:
    """The floor: asyncio's own ``to_thread`` with no store call, one hop per task."""
    await asyncio.to_thread(len, "")


async def concurrent_enqueues(
    backend: str,
    db: quick.Database,
    count: int,
    tick_ms: float,
    chunk: int,
    gc_clock: GcClock,
    call: Callable[[quick.Database, int], Awaitable[None]] = enqueue_one,
) -> tuple[float, float, float, float]:
    """(seconds, the longest gap, the longest gap less full collections, the p99 gap) in ms."""
    ticks: list[tuple[float, float]] = []
    finished = [False]
    sleep = sleeper(backend)

    async def ticker() -> None:
        last = time.perf_counter()
        while not finished[0]:
            await sleep(tick_ms / 1000)
            now = time.perf_counter()
            ticks.append((last, now))
            last = now

    async def producers() -> float:
        await sleep(tick_ms / 1000)
        start = time.perf_counter()
        await spawn_all(backend, count, lambda n: call(db, n), chunk)
        finished[0] = True
        return time.perf_counter() - start

    results: list[float] = []

    async def record() -> None:
        results.append(await producers())

    await spawn_all(backend, 2, lambda n: ticker() if n == 0 else record(), 2)
    raw = sorted((b - a) * 1000 for a, b in ticks)
    less_gc = max((b - a - gc_clock.within(a, b)) * 1000 for a, b in ticks)
    return results[0], raw[-1], less_gc, raw[int(len(raw) * 0.99) - 1]


def sync_rate(db: quick.Database, count: int) -> float:
    start = time.perf_counter()
    for n in range(count):
        quick.enqueue(db, f"tenant-{n % 50}", "bench", {"n": n})
    return count / (time.perf_counter() - start)


async def async_rate(backend: str, db: quick.Database, count: int) -> float:
    start = time.perf_counter()
    await spawn_all(backend, count, lambda n: enqueue_one(db, n), count)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--concurrent", type=int, default=10_000, help="enqueues in flight")
    parser.add_argument("--spawn-chunk", type=int, default=50, help="tasks started per yield")
    parser.add_argument("--tick-ms", type=float, default=5.0, help="the ticker's sleep")
    parser.add_argument("--batch", type=int, default=2_000, help="enqueues per throughput round")
    parser.add_argument("--rounds", type=int, default=5, help="sync/async round pairs")
    args = parser.parse_args()
    gc_clock = GcClock()
    with tempfile.TemporaryDirectory(prefix="bench-aio-") as tmp:
        with quick.open(f"sqlite:///{tmp}/concurrent.db") as db:
            seconds, worst, worst_less_gc, p99 = run(
                args.backend,
                concurrent_enqueues,
                args.backend,
                db,
                args.concurrent,
                args.tick_ms,
                args.spawn_chunk,
                gc_clock,
            )
            stored = sum(quick.queue_counts(db, f"tenant-{q}").get("ready", 0) for q in range(50))
        assert stored == args.concurrent, f"{stored} of {args.concurrent} jobs stored"
        print(
            f"{args.concurrent} concurrent quick.aio.enqueue on {args.backend}: {seconds:.2f} s "
            f"({args.concurrent / seconds:,.0f}/s); ticker every {args.tick_ms:g} ms: longest "
            f"gap {worst:.1f} ms ({worst_less_gc:.1f} ms less full garbage collections), "
            f"p99 {p99:.1f} ms"
        )
        if args.backend == "asyncio":
            _, worst, worst_less_gc, p99 = asyncio.run(
                concurrent_enqueues(
                    "asyncio",
                    db,
                    args.concurrent,
                    args.tick_ms,
                    args.spawn_chunk,
                    gc_clock,
                    thread_hop,
                )
            )
            print(
                f"floor, {args.concurrent} concurrent asyncio.to_thread hops (no store): "
                f"longest gap {worst:.1f} ms ({worst_less_gc:.1f} ms less full garbage "
                f"collections), p99 {p99:.1f} ms"
            )
        sync_rates: list[float] = []
        async_rates: list[float] = []
        for round_ in range(args.rounds):
            with quick.open(f"sqlite:///{tmp}/sync-{round_}.db") as db:
                sync_rates.append(sync_rate(db, args.batch))
            with quick.open(f"sqlite:///{tmp}/async-{round_}.db") as db:
                async_rates.append(run(args.backend, async_rate, args.backend, db, args.batch))
        sync_median, async_median = statistics.median(sync_rates), statistics.median(async_rates)
        per_round = ", ".join(f"{a / s:.2f}" for s, a in zip(sync_rates, async_rates, strict=True))
        print(
            f"throughput, {args.rounds} interleaved rounds of {args.batch}: sync "
            f"{sync_median:,.0f}/s, async {async_median:,.0f}/s "
            f"(ratio {async_median / sync_median:.2f}; per round {per_round})"
        )


if __name__ == "__main__":
    main()
