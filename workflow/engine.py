"""Executing runs: every state change of a run is one transaction over the queue.

Theory of operation
-------------------
* A runnable task step is one queue item on the run's queue, carrying extension data
  (run, step, its dependencies' outputs, its timeout) that routes its settlement back
  here (:class:`workflow.steps.StepExtension`). A sleep step is a delayed item with a built-in
  handler; an external step has no item and waits for :func:`workflow.signal`.
* When an item is claimed, completed or fails, the queue calls this module inside its
  own transaction, so the fenced completion of the item, the step's output, the
  journal event, the successors whose dependencies are now all done, and the run's
  end are committed together or not at all.
* Fencing: each step record names the queue item that currently represents it. A
  settlement for another item (an old attempt, or one of a cancelled or failed run)
  changes nothing but the item itself, so a late result cannot move a run.
* Contention: steps have their own records. A completion reads (serializably) only
  its run record, its own record and the records of its successors' other
  dependencies, so parallel branches conflict only where they join, and there
  exactly one of them schedules the joining step.
* Pause stops new steps: successors are not scheduled and queued (unclaimed) items
  are withdrawn; resume schedules every waiting step whose dependencies are done.
  Failure of a step past its attempts fails the run and skips every unfinished step.
* Hooks are queue items too (see :mod:`workflow.hook_jobs`), enqueued in the same
  transaction as the fact they report, so they run after commit, at least once.

Where each part lives: this module holds one run's state within one transaction
(:class:`Run`) and the transitions every operation shares (scheduling, success,
failure, withdrawal); :mod:`workflow.starting` starts runs; :mod:`workflow.steps` is the
queue's side (:class:`~workflow.steps.StepExtension` settles step items);
:mod:`workflow.steering` holds the operator's moves (signal, cancel, pause, resume,
retry); :mod:`workflow.hook_jobs` enqueues hook items.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from keyspace.codec import pack_value
from keyspace.layout import JOB_DIRECTORY, WF_RUNS, queue_keys
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Transaction
from quick.corruption import UNREADABLE
from quick.enqueueing import prepare, queue_reads, store_new
from quick.errors import InvalidArgument, InvalidPayload, JobRunning
from quick.operations import cancel_waiting as cancel_job
from quick.retrying import attempt_limit
from workflow import hooks
from workflow import journal as events
from workflow.definition import Definition, StepKind, descendants
from workflow.errors import InvalidRunState
from workflow.hook_jobs import enqueue_hook
from workflow.items import SLEEP_TOPIC, StepItem
from workflow.records import (
    FINISHED_STEP,
    TERMINAL_RUN,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    corrupt_run,
    read_run,
    read_step,
    readiness,
    set_run_status,
    settled,
    step_key,
    write_step,
)

__all__ = [
    "Run",
    "definition_of",
    "succeed_reads",
    "new_id",
    "check_storable",
    "make_runnable",
    "schedule_ready",
    "succeed",
    "hold",
    "end_unfinished",
    "fail_run",
    "prune",
    "finish_if_done",
    "unchosen",
    "cancel",
    "STARTS",
    "WITHDRAWS",
    "CHILD_ENDED",
]


def new_id() -> str:
    """A fresh id for a run or for one call of a retried operation (made before its loop)."""
    return uuid.uuid4().hex


def check_storable(field: str, value: Any) -> None:
    """Refuse, naming ``field``, a value msgpack cannot encode or over half a value's limit
    (run inputs, step outputs and signal payloads are copied into other records)."""
    try:
        size = len(pack_value(value))
    except TypeError as error:
        raise InvalidPayload(f"{field}: {error}") from None
    if size > VALUE_LIMIT // 2:
        raise InvalidArgument(field, f"encodes to {size} bytes; the limit is {VALUE_LIMIT // 2}")


# -- one run's state within one transaction ---------------------------------------------------


#: How steps of the kinds whose modules build on this one (map: :mod:`workflow.mapping`,
#: child: :mod:`workflow.children`) start once runnable, and are withdrawn when their
#: run pauses or ends (False: it runs on, fenced); those modules fill these in.
STARTS: dict[StepKind, Callable[[Run, StepRecord], None]] = {}
WITHDRAWS: dict[StepKind, Callable[[Run, StepRecord], bool]] = {}
#: Called, in the same transaction, with each run that ends and has a parent run.
CHILD_ENDED: list[Callable[[Run], None]] = []


#: Decoded definitions by the identity of the stored definition they came from (a
#: run record's ``definition`` list, with the list kept alive beside it so that its id
#: cannot be reused). Records are decoded once per stored bytes
#: (:func:`workflow.records.decode_run`), so every step of a run finds its definition
#: here, and a record stored anew (a corrupt one too) brings a definition of its own.
_DEFINITIONS: dict[int, tuple[list[Any], Definition]] = {}
_DEFINITIONS_KEPT = 4096
_DEFINITIONS_LOCK = threading.Lock()


def definition_of(record: RunRecord) -> Definition:
    """The decoded definition of ``record``; CorruptRun naming the run when it does not decode."""
    stored = record.definition
    found = _DEFINITIONS.get(id(stored))
    if found is not None and found[0] is stored:
        return found[1]
    try:
        definition = record.decode_definition()
    except UNREADABLE as error:
        raise corrupt_run(record.id, WF_RUNS.pack((record.id,)), error) from None
    with _DEFINITIONS_LOCK:  # lanes are threads
        if len(_DEFINITIONS) >= _DEFINITIONS_KEPT:
            _DEFINITIONS.pop(next(iter(_DEFINITIONS)))  # the oldest entry
        _DEFINITIONS[id(stored)] = (stored, definition)
    return definition


class Run:
    """A run loaded in a transaction: its record, definition and journal writer."""

    def __init__(self, tr: Transaction, run_id: str, now: int, run: RunRecord | None = None):
        self.tr = tr
        self.id = run_id
        self.now = now
        self.record = run if run is not None else read_run(tr, run_id)
        self.definition = definition_of(self.record)
        self.journal = events.Journal(tr, run_id, now)
        self._fetched: set[str] = set()

    @property
    def status(self) -> RunStatus:
        return self.record.status

    def set_status(self, status: RunStatus, **changes: Any) -> None:
        """Move the run to ``status``, with ``changes`` to its record (an ended run's
        finish time set)."""
        record = self.record.evolve(**changes)
        if status in TERMINAL_RUN:
            record = record.evolve(finished_ms=self.now)
        self.record = set_run_status(self.tr, record, status)
        if status in TERMINAL_RUN and record.parent is not None:
            for ended in CHILD_ENDED:
                ended(self)

    def steer(self, status: RunStatus, action: str) -> bool:
        """An operator's move to ``status``: False when the run is there already (so a
        retried call does nothing); InvalidRunState when the run has ended."""
        if self.status is status:
            return False
        if self.status in TERMINAL_RUN:
            raise InvalidRunState(self.id, self.status.value, action)
        self.set_status(status)
        return True

    def step(self, key: str) -> StepRecord:
        self._fetched.add(key)
        return read_step(self.tr, self.id, key)

    def prefetch(self, keys: Iterable[str]) -> None:
        """Fetch the records of steps ``keys``, and what enqueueing a step's item on the
        run's queue reads, in one round trip adding no conflicts, so the :meth:`step`
        reads and enqueues that follow are answered by the transaction (each read still
        adds its read conflict, so contention is as if it had gone to the store)."""
        wanted = [key for key in dict.fromkeys(keys) if key not in self._fetched]
        if wanted:
            self._fetched.update(wanted)
            step_keys = [step_key(self.id, key) for key in wanted]
            self.tr.get_many([*step_keys, *queue_reads(self.record.queue)], snapshot=True)

    def prefetch_items(self, keys: Iterable[str]) -> None:
        """Fetch, in one round trip and adding no conflicts, what withdrawing the queued
        items of steps ``keys`` reads (their directory entries and job records)."""
        queue = queue_keys(self.record.queue)
        wanted: list[bytes] = []
        for key in keys:
            job_id = self.step(key).job_id
            if job_id is not None:
                wanted += [JOB_DIRECTORY.pack((job_id,)), queue.job(job_id)]
        if wanted:
            self.tr.get_many(wanted, snapshot=True)

    def save(self, step: StepRecord) -> None:
        write_step(self.tr, step)

    def hook(self, kind: str, status: str, step: str | None = None, **fields: Any) -> None:
        """Enqueue a hook item when this run's workflow had hooks of ``kind`` at start."""
        enqueue_hook(self.tr, self.record, self.now, kind, status, step, **fields)


def make_runnable(run: Run, key: str) -> None:
    """Start ``key``, whose dependencies have all succeeded (unless the run is paused)."""
    if run.status is not RunStatus.RUNNING:
        return
    step = run.step(key)
    if step.status != StepStatus.WAITING:
        return
    spec = run.definition.steps[key]
    start = STARTS.get(spec.kind)
    if start is not None:
        start(run, step)
        return
    if spec.kind is StepKind.EXTERNAL:
        if step.signalled:
            succeed(run, step, step.signal)
        elif not step.awaiting:
            run.save(step.evolve(awaiting=True))
            run.journal.append(events.STEP_AWAITING, key)
        return
    item = StepItem(run_id=run.id, step=key, workflow=run.record.workflow)
    if spec.kind is StepKind.SLEEP:
        assert spec.seconds is not None
        due = run.now + round(spec.seconds * 1000)
        job = prepare(
            run.record.queue,
            SLEEP_TOPIC,
            None,
            delay=spec.seconds,
            now=run.now,
            extension=item.to_record(),
            trace=run.record.trace,
        )
    else:
        assert spec.topic is not None
        due = run.now
        results = {dependency: run.step(dependency).output for dependency in spec.after}
        item = dataclasses.replace(item, results=results, timeout=spec.timeout)
        attempts = spec.max_attempts
        if step.counted:
            # Held by a pause after failed attempts: the new item gets what is left of
            # the limit the last attempt ran under.
            limit = attempt_limit(step.max_attempts, attempts)
            attempts = max(1, limit - step.counted)
        job = prepare(
            run.record.queue,
            spec.topic,
            run.record.input,
            priority=spec.priority,
            max_attempts=attempts,
            now=run.now,
            extension=item.to_record(),
            trace=run.record.trace,
        )
    # The job id is new in every try of this body, so no earlier try can hold it: the
    # directory lookup a retried enqueue needs is skipped (first_try).
    job_id = store_new(run.tr, job, first_try=True)
    run.save(step.evolve(status=StepStatus.SCHEDULED, job_id=job_id, due_ms=due))
    run.journal.append(events.STEP_SCHEDULED, key, due_ms=due, job_id=job_id)


def schedule_ready(run: Run, keys: Iterable[str]) -> None:
    """Make runnable each of ``keys`` whose dependencies have all settled, and skip
    those a branch left without any (their records and their dependencies' are read in
    one round trip first); see :func:`workflow.records.readiness`."""
    keys = list(keys)
    run.prefetch([*keys, *(dep for key in keys for dep in run.definition.steps[key].after)])
    for key in keys:
        after = run.definition.steps[key].after
        decision = readiness(run.step(dep) for dep in after)
        if decision == "run":
            make_runnable(run, key)
        elif decision == "prune":
            prune(run, key, "every step it runs after was skipped by a branch")


def prune(run: Run, key: str, reason: str) -> None:
    """Skip waiting step ``key``, which a branch left out, and what only it leads to."""
    step = run.step(key)
    if step.status != StepStatus.WAITING:
        return
    run.save(
        step.evolve(status=StepStatus.SKIPPED, pruned=True, reason=reason, finished_ms=run.now)
    )
    run.journal.append(events.STEP_SKIPPED, key, reason=reason)
    schedule_ready(run, run.definition.successors[key])


def finish_if_done(run: Run, just: str | None = None) -> None:
    """Succeed the run when every final step has settled (``just`` settled now)."""
    if run.status in TERMINAL_RUN:
        return
    if all(settled(run.step(s)) for s in run.definition.sinks if s != just):
        run.set_status(RunStatus.SUCCEEDED)
        run.journal.append(events.RUN_SUCCEEDED)
        run.hook(hooks.RUN_FINISHED, RunStatus.SUCCEEDED.value)


def succeed_reads(definition: Definition, key: str) -> list[str]:
    """The steps whose records the success of step ``key`` reads: its successors, their
    dependencies, and the run's final steps."""
    successors = definition.successors[key]
    after = (dep for other in successors for dep in definition.steps[other].after)
    return [*successors, *after, *definition.sinks]


def succeed(run: Run, step: StepRecord, output: Any) -> None:
    key = step.key
    successors = run.definition.successors[key]
    run.prefetch(succeed_reads(run.definition, key))
    run.save(
        step.evolve(status=StepStatus.SUCCEEDED, output=output, finished_ms=run.now, error=None)
    )
    run.journal.append(events.STEP_SUCCEEDED, key, output=output)
    run.hook(hooks.STEP_SUCCEEDED, StepStatus.SUCCEEDED.value, key, output=output)
    branches = run.definition.steps[key].branches
    left_out = [] if branches is None else unchosen(branches, output)
    for other in left_out:
        prune(run, other, f"branch step {key!r} chose {output!r}")
    schedule_ready(run, successors)
    if key in run.definition.sinks or left_out:
        finish_if_done(run, key)


def unchosen(branches: Mapping[str, Iterable[str]], chosen: str) -> list[str]:
    """The steps of the branches not ``chosen`` that ``chosen``'s branch does not list."""
    keep = set(branches[chosen])
    return [k for name, keys in branches.items() if name != chosen for k in keys if k not in keep]


def _withdraw(run: Run, step: StepRecord) -> bool:
    """Remove the step's queued item; False when it is running (then it is fenced). A
    map's first page of instances is withdrawn now and the rest by its pager, a child
    step's run is cancelled with it."""
    withdraw = WITHDRAWS.get(run.definition.steps[step.key].kind)
    if withdraw is not None:
        return withdraw(run, step)
    if step.job_id is None or step.status != StepStatus.SCHEDULED:
        return bool(step.status != StepStatus.RUNNING)
    try:
        cancel_job(run.tr, step.job_id)
    except JobRunning:
        return False
    return True


def hold(run: Run, step: StepRecord) -> None:
    """Withdraw a queued task step of a paused run; resume schedules it again."""
    if _withdraw(run, step):
        run.save(step.evolve(status=StepStatus.WAITING, job_id=None))
        run.journal.append(events.STEP_HELD, step.key)


def end_unfinished(run: Run, status: StepStatus, reason_for: Any) -> None:
    """Move every unfinished step to ``status`` (skipped or cancelled), withdrawing items."""
    kind = events.STEP_SKIPPED if status is StepStatus.SKIPPED else events.STEP_CANCELLED
    run.prefetch(run.definition.steps)
    run.prefetch_items(run.definition.steps)
    for key in run.definition.steps:
        step = run.step(key)
        if step.status in FINISHED_STEP:
            continue
        _withdraw(run, step)
        reason = reason_for(key)
        run.save(step.evolve(status=status, reason=reason, finished_ms=run.now))
        run.journal.append(kind, key, reason=reason)


def fail_run(run: Run, step: StepRecord, error: str) -> None:
    key = step.key
    run.save(step.evolve(status=StepStatus.FAILED, error=error, finished_ms=run.now, due_ms=None))
    run.journal.append(events.STEP_FAILED, key, error=error, attempt=step.attempts)
    run.hook(hooks.STEP_FAILED, StepStatus.FAILED.value, key, error=error)
    run.set_status(RunStatus.FAILED, reason=f"step {key!r} failed: {error}")
    if run.definition.steps[key].kind is StepKind.MAP:
        _withdraw(run, step)  # its instances still queued
    downstream = descendants(run.definition, key)

    def reason(other: str) -> str:
        if other in downstream:
            return f"depends on step {key!r}, which failed"
        return f"the run failed at step {key!r}"

    end_unfinished(run, StepStatus.SKIPPED, reason)
    run.journal.append(events.RUN_FAILED, key, error=error)
    run.hook(hooks.RUN_FINISHED, RunStatus.FAILED.value, key, error=error)


def cancel(run: Run) -> bool:
    """Cancel ``run`` (and its child runs): False when it had ended already."""
    if run.status in TERMINAL_RUN:
        return False
    run.set_status(RunStatus.CANCELLED)
    end_unfinished(run, StepStatus.CANCELLED, lambda key: "the run was cancelled")
    run.journal.append(events.RUN_CANCELLED)
    run.hook(hooks.RUN_FINISHED, RunStatus.CANCELLED.value)
    return True
