"""Workflow runs in the simulation: start, signal, cancel, pause, resume, retry, and steps
claimed like any job and settled through ``quick.outcomes.settle_batch``.

The runs live on their own queue, :data:`QUEUE`; their step items are the workflow's
jobs, not the simulator's, so the job model leaves them out (the store's invariants
still cover them). After every step each run is checked (:func:`check_run`): step
records agree with the run view and with ``list_runs``; a terminal run has exactly one
terminal journal event since its last retry; no step succeeds twice between retries;
the journal is in commit order and causal (nothing is scheduled or awaited before its
dependencies succeeded).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import quick
import workflow
from keyspace.protocol import Database
from quick.jobs import Claim
from quick.outcomes import Attempt, job_config, settle_batch
from workflow import journal as events
from workflow.records import read_steps

__all__ = ["QUEUE", "Workflows", "check_run"]

QUEUE = "wq"
TERMINAL = {"succeeded", "failed", "cancelled"}
TERMINAL_EVENTS = {events.RUN_SUCCEEDED, events.RUN_FAILED, events.RUN_CANCELLED}

APP = quick.App()


@APP.job("work", max_attempts=2)
def _work(payload: Any, meta: Any) -> dict[str, Any]:
    return {"step": meta.context.step if meta.context else None}


WORKFLOW = (
    workflow.Workflow("sim")
    .step("a", topic="work")
    .step("b", topic="work", after="a", max_attempts=1)
    .external("ext", after="a")
    .sleep("nap", seconds=1, after="a")
    .step("c", topic="work", after=["b", "ext", "nap"])
)

_STEERING = (
    workflow.InvalidRunState,
    workflow.InvalidSignal,
    workflow.RunNotFound,
)


def check_run(db: Database, run_id: str) -> list[str]:
    """Every violation of the run's invariants (see the module docstring)."""
    view = workflow.inspect_run(db, run_id)
    records = db.transact(lambda tr: read_steps(tr.snapshot, run_id))
    out = []
    where = f"run {run_id[:8]} ({view.status})"
    for key, step in view.steps.items():
        stored = records[key].status if key in records else "waiting"
        if stored != step.status:
            out.append(f"{where}: step {key!r} record says {stored}, view says {step.status}")
    listed = [
        r.status for r in workflow.list_runs(db, workflow=view.workflow) if r.run_id == run_id
    ]
    if listed != [view.status]:
        out.append(f"{where}: list_runs says {listed}")
    kinds = [event.kind for event in view.journal]
    if not kinds or kinds[0] != events.RUN_STARTED:
        out.append(f"{where}: the journal does not open with run_started: {kinds[:3]}")
    retried = [i for i, kind in enumerate(kinds) if kind == events.RUN_RETRIED]
    since = retried[-1] + 1 if retried else 0
    ends = [kind for kind in kinds[since:] if kind in TERMINAL_EVENTS]
    if len(ends) != (1 if view.status in TERMINAL else 0):
        out.append(f"{where}: terminal events since the last retry: {ends}")
    done: set[str] = set()
    succeeded: Counter[str | None] = Counter()
    for event in view.journal:
        if event.kind == events.RUN_RETRIED:
            done -= set(event.details["steps"])
            succeeded.clear()
        elif event.kind == events.STEP_SUCCEEDED:
            succeeded[event.step] += 1
            done.add(str(event.step))
        elif event.kind in (events.STEP_SCHEDULED, events.STEP_AWAITING):
            after = set(view.steps[str(event.step)].after)
            if not after <= done:
                out.append(f"{where}: {event.kind} {event.step} before {sorted(after - done)}")
    twice = [step for step, n in succeeded.items() if n > 1]
    if twice:
        out.append(f"{where}: steps succeeded more than once: {twice}")
    positions = [event.position for event in view.journal]
    if positions != sorted(set(positions)):
        out.append(f"{where}: journal positions are not in strict commit order")
    return out


class Workflows:
    """The workflow side of one seed: its runs and the step claims its worker holds."""

    def __init__(self, db: Database, rng: random.Random, clock: Callable[[], int]) -> None:
        self.db = db
        self.rng = rng
        self.clock = clock
        self.runs: list[str] = []
        self.held: list[Claim] = []
        #: Set by anything that may have written a run (the workflow operations, a claim
        #: round that leased a step); only then are the runs read and checked again.
        self.dirty = False

    def check(self) -> list[str]:
        if not self.dirty:
            return []
        self.dirty = False
        return [problem for run_id in self.runs for problem in check_run(self.db, run_id)]

    def start(self) -> str:
        self.dirty = True
        if len(self.runs) >= 4:
            return "enough runs"
        key = self.rng.choice((None, "k1", "k2"))
        run_id = workflow.start_run(
            self.db, WORKFLOW, {"n": len(self.runs)}, queue_id=QUEUE, idempotency_key=key
        )
        if run_id not in self.runs:
            self.runs.append(run_id)
        return f"{run_id[:8]} key={key}"

    def work(self) -> str:
        """Claim step items and settle some (random successes and errors); maybe crash."""
        self.dirty = True
        claims = quick.claim(
            self.db, QUEUE, "w0", limit=self.rng.randint(1, 3), lease_ms=5_000, now_ms=self.clock()
        )
        self.held.extend(claims)
        batch = self.held[: self.rng.randint(0, 3)]
        del self.held[: len(batch)]
        errors: tuple[BaseException | None, ...] = (None, None, RuntimeError("boom"))
        attempts = [Attempt(c, job_config(APP, c), self.rng.choice(errors)) for c in batch]
        outcomes = settle_batch(self.db, attempts)
        crashed = self.rng.random() < 0.2
        if crashed:
            self.held.clear()
        return f"claimed {len(claims)}, settled {[o.value for o in outcomes]}" + (
            " then crashed" if crashed else ""
        )

    def steer(self) -> str:
        """Signal, cancel, pause, resume or retry a run (refusals are fine)."""
        self.dirty = True
        if not self.runs:
            return "no run"
        run_id = self.rng.choice(self.runs)
        action = self.rng.choice(("signal", "signal", "cancel", "pause", "resume", "retry"))
        try:
            if action == "signal":
                workflow.signal(self.db, run_id, "ext", {"ok": True})
            elif action == "retry":
                workflow.retry_run(self.db, run_id)
            else:
                steering = {
                    "cancel": workflow.cancel_run,
                    "pause": workflow.pause_run,
                    "resume": workflow.resume_run,
                }
                steering[action](self.db, run_id)
        except _STEERING as refused:
            return f"{action} {run_id[:8]}: {type(refused).__name__}"
        return f"{action} {run_id[:8]}"
