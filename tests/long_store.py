"""A store with many queues, runs and schedules, and a wide workflow, for round-trip tests.

Shared by ``tests/integration/test_long_transactions.py`` and
``scripts/bench_round_trips.py``: both measure what each transaction of the listings,
cron and workflow settlement costs when the store holds much more than one of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import quick
import workflow
from keyspace.protocol import Transaction

__all__ = [
    "QUEUES",
    "RUNS",
    "SCHEDULES",
    "FAN",
    "FAN_FLOW",
    "build_store",
    "app",
    "run_all",
    "start_fan",
]

QUEUES = 500
RUNS = 300
SCHEDULES = 300
FAN = 60

#: ``a``, then ``FAN`` parallel branches after it, then ``c`` joining them all.
FAN_FLOW = workflow.Workflow("fan").step("a", topic="work")
for _i in range(FAN):
    FAN_FLOW = FAN_FLOW.step(f"b{_i}", topic="work", after=["a"])
FAN_FLOW = FAN_FLOW.step("c", topic="work", after=[f"b{i}" for i in range(FAN)])
SMALL_FLOW = workflow.Workflow("small").step("only", topic="work")


def app(fail: set[str] | None = None) -> quick.App:
    """An app whose ``work`` handler succeeds, or fails for the step keys in ``fail``."""
    built = quick.App()

    @built.job("work", max_attempts=1)
    def work(payload: Any, meta: quick.Meta) -> str:
        if fail and meta.context is not None and meta.context.step in fail:
            raise RuntimeError("fails on purpose")
        return "done"

    return built


def build_store(path: Path) -> None:
    """``QUEUES`` queues with a job each, queue ``deep`` with 150 jobs over 40 priorities
    and 20 dead letters, ``RUNS`` one-step runs and ``SCHEDULES`` schedules."""
    with quick.open(f"sqlite:///{path}") as db:
        quick.enqueue_many(
            db, [{"queue_id": f"tenant-{i:04d}", "topic": "t"} for i in range(QUEUES)]
        )
        quick.enqueue_many(
            db, [{"queue_id": "deep", "topic": "t", "priority": i % 40} for i in range(150)]
        )
        for claim in quick.claim(db, "deep", "w", limit=20):
            quick.dead_letter(db, claim, "buried for the listing")

        def start(tr: Transaction, first: int) -> None:
            for i in range(first, first + 100):
                workflow.start_run(tr, SMALL_FLOW, i, queue_id=f"tenant-{i:04d}")

        for first in range(0, RUNS, 100):
            db.transact(start, first)
        for i in range(SCHEDULES):
            quick.schedule(db, f"s{i:04d}", "* * * * *", f"tenant-{i:04d}", "t", None)


def run_all(db: quick.Database, queue: str, limit: int = 100) -> None:
    """Claim and run (successfully) what ``queue`` has visible."""
    for claim in quick.claim(db, queue, "w", limit=limit):
        quick.run_claim(db, app(), claim)


def start_fan(path: Path, queue: str) -> str:
    """Start a run of :data:`FAN_FLOW` on ``queue``; its id."""
    with quick.open(f"sqlite:///{path}") as db:
        return workflow.start_run(db, FAN_FLOW, None, queue_id=queue)
