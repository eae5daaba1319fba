"""``quick demo``: a mixed multi-tenant workload drained by a consumer, with live progress.

Enqueues jobs for many tenants (priorities, delays, a flaky topic that succeeds on
retry, a poison topic that is dead-lettered), runs a consumer in-process, shows
progress while it drains, and returns a summary a person can read.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database
from quick.jobs import DEFAULT_PRIORITY

__all__ = ["DemoResult", "build_app", "run_demo"]

TOPICS = ("demo.email", "demo.report", "demo.flaky", "demo.delayed", "demo.poison")


@dataclass(slots=True)
class DemoResult:
    """What the demo did."""

    enqueued: int = 0
    tenants: int = 0
    elapsed: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    finished: bool = False


def build_app(result: DemoResult, run_tag: str) -> quick.App:
    """The demo's handlers; they record when each job started, for latency."""
    app = quick.App()

    def started(payload: dict[str, Any]) -> None:
        result.latencies_ms.append(time.time() * 1000 - payload["enqueued_ms"])

    @app.job("demo.email", loop="trio")
    async def email(payload: dict[str, Any], meta: quick.Meta) -> None:
        started(payload)
        result.by_topic["demo.email"] += 1

    @app.job("demo.report", priority=10, loop="trio")
    async def report(payload: dict[str, Any], meta: quick.Meta) -> None:
        started(payload)
        await trio.sleep(0.005)
        result.by_topic["demo.report"] += 1

    @app.job("demo.flaky", max_attempts=3, backoff=(0.2, 0.5), loop="trio")
    async def flaky(payload: dict[str, Any], meta: quick.Meta) -> None:
        if meta.attempt == 1:
            raise ConnectionError("upstream timed out (first attempt always fails)")
        result.by_topic["demo.flaky"] += 1

    @app.job("demo.delayed", loop="trio")
    async def delayed(payload: dict[str, Any], meta: quick.Meta) -> None:
        result.by_topic["demo.delayed"] += 1

    @app.job("demo.poison", max_attempts=2, backoff=(0.2, 0.2), loop="trio")
    async def poison(payload: dict[str, Any], meta: quick.Meta) -> None:
        raise ValueError(f"malformed invoice {payload['n']} ({run_tag})")

    return app


def _workload(tenants: int, jobs: int, rng: random.Random, tag: str) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    now = time.time() * 1000
    for n in range(jobs):
        tenant = f"demo-{tag}-tenant-{rng.randrange(tenants):03d}"
        roll = rng.random()
        topic = (
            "demo.report"
            if roll < 0.2
            else "demo.flaky"
            if roll < 0.25
            else "demo.delayed"
            if roll < 0.30
            else "demo.email"
        )
        spec: dict[str, Any] = {
            "queue_id": tenant,
            "topic": topic,
            "payload": {"n": n, "enqueued_ms": now},
            "priority": 10 if topic == "demo.report" else DEFAULT_PRIORITY,
        }
        if topic == "demo.delayed":
            spec["delay"] = rng.uniform(1.0, 3.0)
        specs.append(spec)
    specs.append(
        {
            "queue_id": f"demo-{tag}-tenant-000",
            "topic": "demo.poison",
            "payload": {"n": jobs, "enqueued_ms": now},
            "max_attempts": 2,
        }
    )
    return specs


def run_demo(
    db: Database,
    *,
    tenants: int = 50,
    jobs: int = 2_000,
    concurrency: int = 8,
    timeout: float = 30.0,
    progress: Callable[[DemoResult, int], None] | None = None,
    seed: int | None = None,
) -> DemoResult:
    """Enqueue the demo workload, drain it with one consumer, and return what happened."""
    rng = random.Random(seed)
    tag = f"{rng.randrange(16**6):06x}"
    result = DemoResult(tenants=tenants)
    app = build_app(result, tag)
    specs = _workload(tenants, jobs, rng, tag)
    for start in range(0, len(specs), 500):
        quick.enqueue_many(db, specs[start : start + 500])
    result.enqueued = len(specs)
    consumer = Consumer(
        db, app, ConsumerConfig(concurrency=concurrency, batch_size=10, cron=False, grace=5)
    )
    began = time.perf_counter()

    def settled() -> int:
        counts = consumer.outcomes
        return counts["completed"] + counts["dead_lettered"]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            with trio.move_on_after(timeout):
                while settled() < result.enqueued:
                    if progress is not None:
                        result.outcomes = Counter(consumer.outcomes)
                        progress(result, settled())
                    await trio.sleep(0.25)
                result.finished = True
            consumer.stop()

    trio.run(main)
    result.elapsed = time.perf_counter() - began
    result.outcomes = Counter(consumer.outcomes)
    result.dead = [d.error for d in quick.list_dead(db) if tag in d.error]
    return result


def summary(result: DemoResult) -> list[str]:
    """The closing report, as lines."""
    lat = sorted(result.latencies_ms)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    done = result.outcomes["completed"]
    lines = [
        f"{'finished' if result.finished else 'stopped at the time limit'}: "
        f"{result.enqueued} jobs across {result.tenants} tenants in {result.elapsed:.1f} s "
        f"({done / max(result.elapsed, 1e-9):,.0f} completed/s)",
        f"  completed {done}, retried {result.outcomes['requeued']}, "
        f"dead-lettered {result.outcomes['dead_lettered']}, "
        f"lease lost {result.outcomes['lease_lost']}",
        "  by topic: "
        + ", ".join(f"{t} {result.by_topic[t]}" for t in TOPICS if result.by_topic[t]),
        f"  wait from enqueue to first start: p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms",
    ]
    for error in result.dead:
        lines.append(f"  dead letter: {error}")
    lines.append("  inspect with: quick queues, quick dlq list, quick inspect keyspace")
    return lines
