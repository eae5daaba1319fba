"""Driving workflow runs in tests: a counting step app, claim and settle one step at a time,
and the invariants every run holds.

Most tests drive steps deterministically with ``quick.claim`` and ``run_claim`` (the
queue's own synchronous path), so each one decides exactly which step is leased,
completed or late. Step handlers are transactional where the test counts them: their
write commits with the step's completion, so the count is exact on the fault-injecting
engine too (1021 retries included). After each scenario :func:`check_run` holds the
run's invariants: inspect_run agrees with the step records and with list_runs, a
terminal run has exactly one terminal journal event, no step succeeds twice, and the
journal is in causal (commit) order.

Timers: the queue's visibility is wall-clock milliseconds (``quick.jobs.now_ms``), not
trio's clock, so trio's ``MockClock`` cannot move a sleep step forward; the tests pass
the time to ``quick.claim(..., now_ms=...)`` instead.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

import quick
from consumer import Consumer, ConsumerConfig
from keyspace.layout import ROOT
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick.outcomes import Outcome, job_config, run_claim, settle
from tests.waiting import until
from workflow import RunView, inspect_run, list_runs
from workflow import journal as events
from workflow.records import read_steps

OWNER = "test-driver"
TERMINAL = {"succeeded", "failed", "cancelled"}
TERMINAL_EVENTS = {events.RUN_SUCCEEDED, events.RUN_FAILED, events.RUN_CANCELLED}


@dataclass
class Steps:
    """An app whose ``work`` step handler commits a call count with the step's completion.

    Steps named in ``failing`` raise instead (their count rolls back with the attempt).
    ``work`` retries at once; ``patient`` runs the same handler, retrying after 30 s.
    """

    app: quick.App
    space: Subspace
    failing: set[str] = field(default_factory=set)

    def calls(self, db: Database, run_id: str) -> dict[str, int]:
        rows = db.transact(lambda tr: tr.get_range(*self.space.range(("calls", run_id))))
        return {self.space.unpack(key)[2]: struct.unpack("<q", value)[0] for key, value in rows}


def settle_claim(db: Database, app: quick.App, claim: quick.Claim) -> Outcome:
    """Run one claim to its outcome; a sleep step's built-in handler is async, so settle it."""
    config = job_config(app, claim)
    if config is not None and config.is_async:
        return settle(db, claim, config, None)
    return run_claim(db, app, claim)


def claim_step(db: Database, queue: str, step: str, *, now: int | None = None) -> quick.Claim:
    """Lease the item of ``step`` alone, giving back whatever else the claim took."""
    claims = quick.claim(db, queue, OWNER, limit=10, now_ms=now)
    wanted = [claim for claim in claims if (claim.extension or {}).get("sk") == step]
    for claim in claims:
        if claim not in wanted:
            quick.release(db, claim)
    assert len(wanted) == 1, f"no item for step {step!r} in {claims}"
    return wanted[0]


def pending(db: Database, queue: str) -> int:
    counts = quick.queue_counts(db, queue)
    return counts["ready"] + counts["scheduled"] + counts["leased"]


def everything(db: Database) -> list[tuple[bytes, bytes]]:
    return list(db.transact(lambda tr: tr.get_range(*ROOT.range())))


def check_run(db: Database, run_id: str) -> RunView:
    """The run's invariants, whatever happened to it; returns its view."""
    view = inspect_run(db, run_id)
    records = db.transact(lambda tr: read_steps(tr, run_id))
    assert set(records) <= set(view.steps)
    for key, step in view.steps.items():
        stored = records[key].status if key in records else "waiting"
        assert stored == step.status, f"step {key!r}: record {stored}, journal {step.status}"
    (summary,) = [run for run in list_runs(db, workflow=view.workflow) if run.run_id == run_id]
    assert summary.status == view.status
    kinds = [event.kind for event in view.journal]
    assert kinds[0] == events.RUN_STARTED
    last_retry = max((i for i, kind in enumerate(kinds) if kind == events.RUN_RETRIED), default=-1)
    ends = [kind for kind in kinds[last_retry + 1 :] if kind in TERMINAL_EVENTS]
    assert len(ends) == (1 if view.status in TERMINAL else 0), kinds
    succeeded = Counter(e.step for e in view.journal if e.kind == events.STEP_SUCCEEDED)
    assert all(n == 1 for n in succeeded.values()), succeeded
    positions = [event.position for event in view.journal]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    # Skipped means never run: no step skipped since the last retry was claimed after.
    skipped: set[str] = set()
    for event in view.journal:
        if event.kind == events.RUN_RETRIED:
            skipped -= set(event.details["steps"])
        elif event.kind == events.STEP_SKIPPED:
            skipped.add(str(event.step))
        elif event.kind in (events.STEP_SCHEDULED, events.STEP_CLAIMED, events.STEP_SUCCEEDED):
            assert event.step not in skipped, (event, skipped)
    # Causal order: nothing is scheduled or awaited before its dependencies settled.
    done: set[str] = set()
    for event in view.journal:
        if event.kind == events.RUN_RETRIED:
            done -= set(event.details["steps"])
        elif event.kind in (events.STEP_SUCCEEDED, events.STEP_SKIPPED):
            assert event.step is not None
            done.add(event.step)  # a step a branch left out settles what follows it
        elif event.kind in (events.STEP_SCHEDULED, events.STEP_AWAITING):
            assert event.step is not None
            assert set(view.steps[event.step].after) <= done, (event, done)
    return view


def ends(view: RunView) -> list[str]:
    return [event.kind for event in view.journal if event.kind in TERMINAL_EVENTS]


def consume(db: Database, app: quick.App, done: Callable[[], bool]) -> Consumer:
    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=4, cron=False, max_idle=0.05))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(done, 20.0)
            consumer.stop()
        return consumer

    return trio.run(main)
