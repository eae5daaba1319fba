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
from workflow.engine import unchosen
from workflow.records import StepStatus, read_instances, read_run, read_steps

__all__ = ["QUEUE", "Workflows", "check_run"]

QUEUE = "wq"
TERMINAL = {"succeeded", "failed", "cancelled"}
TERMINAL_EVENTS = {events.RUN_SUCCEEDED, events.RUN_FAILED, events.RUN_CANCELLED}

APP = quick.App()


@APP.job("work", max_attempts=2)
def _work(payload: Any, meta: Any) -> dict[str, Any]:
    return {"step": meta.context.step if meta.context else None}


@APP.job("items", max_attempts=2)
def _items(payload: Any, meta: Any) -> list[int]:
    return [1, 2]


@APP.job("pick", max_attempts=2)
def _pick(payload: Any, meta: Any) -> str:
    return "left"


WORKFLOW = (
    workflow.Workflow("sim")
    .step("a", topic="work")
    .step("b", topic="work", after="a", max_attempts=1)
    .external("ext", after="a")
    .sleep("nap", seconds=1, after="a")
    .step("c", topic="work", after=["b", "ext", "nap"])
)

#: The child workflow of :data:`DYNAMIC`: a task, then a signal on ``ext``.
KID = workflow.Workflow("sim-kid").step("k", topic="work").external("ext", after="k")

#: Map, branch and child steps: a child run from the start, a map over ``list``'s output
#: (its length drawn, sometimes no list at all), a branch after ``list`` choosing ``l``
#: or ``r`` (sometimes an undeclared name), and a join after everything.
DYNAMIC = (
    workflow.Workflow("sim-dyn")
    .step("list", topic="items")
    .child("kid", workflow=KID)
    .map("m", topic="work", over="list", max_attempts=2)
    .branch("route", topic="pick", branches={"left": ["l"], "right": ["r"]}, after="list")
    .step("l", topic="work", after="route")
    .step("r", topic="work", after="route")
    .step("join", topic="work", after=["m", "kid", "l", "r"])
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
    return out + check_dynamic(db, run_id, view)


def check_dynamic(db: Database, run_id: str, view: workflow.RunView) -> list[str]:
    """The invariants of map, branch and child steps: each instance settles once (a map's
    count of successes is its succeeded instances, all of them once it succeeded); steps a
    branch left out are skipped and never run; a parent never finishes before its
    children (an ended run's child run has ended, a succeeded one's succeeded first)."""

    def read(tr: Any) -> tuple[Any, dict[str, Any], dict[str, list[Any]], dict[str, Any]]:
        definition = read_run(tr.snapshot, run_id).decode_definition()
        records = read_steps(tr.snapshot, run_id)
        instances = {
            key: read_instances(tr.snapshot, run_id, key)
            for key, spec in definition.steps.items()
            if spec.kind is workflow.StepKind.MAP
        }
        children = {
            key: read_run(tr.snapshot, record.child_run)
            for key, record in records.items()
            if record.child_run is not None
        }
        return definition, records, instances, children

    definition, records, instances, children = db.transact(read)
    where = f"run {run_id[:8]} ({view.status})"
    out = []
    for key, rows in instances.items():
        record = records.get(key)
        succeeded = sum(1 for row in rows if row.status == StepStatus.SUCCEEDED)
        if record is not None and record.done != succeeded:
            out.append(f"{where}: map {key!r} counted {record.done}, {succeeded} succeeded")
        finished = record is not None and record.status == StepStatus.SUCCEEDED
        if finished and record is not None and record.count != succeeded:
            out.append(f"{where}: map {key!r} succeeded with {succeeded}/{record.count}")
    ran = {e.step for e in view.journal if e.kind in (events.STEP_CLAIMED, events.STEP_SUCCEEDED)}
    for key, spec in definition.steps.items():
        record = records.get(key)
        if spec.branches is None or record is None or record.status != StepStatus.SUCCEEDED:
            continue
        for other in unchosen(spec.branches, record.output):
            left = records.get(other)
            if left is None or not left.pruned or other in ran:
                out.append(f"{where}: step {other!r}, left out by branch {key!r}, ran or waits")
    for key, child in children.items():
        if view.status in TERMINAL and child.status not in TERMINAL:
            out.append(f"{where}: ended before its child run {child.id[:8]} ({child.status})")
        if view.status == "succeeded" and (
            child.status != "succeeded" or (child.finished_ms or 0) > (view.finished_ms or 0)
        ):
            out.append(f"{where}: succeeded before its child run {child.id[:8]}")
        if records[key].status == StepStatus.SUCCEEDED and child.status != "succeeded":
            out.append(f"{where}: step {key!r} succeeded, its child run is {child.status}")
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
        self._adopt_children()
        return [problem for run_id in self.runs for problem in check_run(self.db, run_id)]

    def _adopt_children(self) -> None:
        """Child runs started since the last check join the runs checked and steered."""
        for run_id in list(self.runs):
            steps = self.db.transact(lambda tr, r=run_id: read_steps(tr.snapshot, r))
            for step in steps.values():
                if step.child_run is not None and step.child_run not in self.runs:
                    self.runs.append(step.child_run)

    def start(self) -> str:
        self.dirty = True
        if len(self.runs) >= 4:
            return "enough runs"
        key = self.rng.choice((None, "k1", "k2"))
        flow = self.rng.choice((WORKFLOW, DYNAMIC))
        run_id = workflow.start_run(
            self.db, flow, {"n": len(self.runs)}, queue_id=QUEUE, idempotency_key=key
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
        attempts = []
        for claim in batch:
            error = self.rng.choice(errors)
            output = None if error is not None else self._output(claim)
            attempts.append(Attempt(claim, job_config(APP, claim), error, output))
        outcomes = settle_batch(self.db, attempts)
        crashed = self.rng.random() < 0.2
        if crashed:
            self.held.clear()
        return f"claimed {len(claims)}, settled {[o.value for o in outcomes]}" + (
            " then crashed" if crashed else ""
        )

    def _output(self, claim: Claim) -> Any:
        """What a successful attempt returns: a list of drawn length (or none) for
        ``items``, a branch name (or an undeclared one) for ``pick``."""
        if claim.topic == "items":
            return self.rng.choice(([], [1], [1, 2], [1, 2, 3], {"not": "a list"}))
        if claim.topic == "pick":
            return self.rng.choice(("left", "right", "right", "nowhere"))
        return {"step": (claim.extension or {}).get("sk")}

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
