"""Executing runs: every state change of a run is one transaction over the queue.

Theory of operation
-------------------
* A runnable task step is one queue item on the run's queue, carrying extension data
  (run, step, its dependencies' outputs, its timeout) that routes its settlement back
  here (:class:`StepExtension`). A sleep step is a delayed item with a built-in
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
* Hooks are queue items too (see :mod:`workflow.hooks`), enqueued in the same
  transaction as the fact they report, so they run after commit, at least once.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from keyspace.codec import pack_value
from keyspace.layout import WF_BY_STATUS, WF_IDEMPOTENCY, WF_RUNS
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick import extensions
from quick.app import JobConfig
from quick.enqueueing import prepare, store_new
from quick.errors import InvalidArgument, InvalidPayload, JobRunning
from quick.jobs import Claim, now_ms
from quick.operations import cancel as cancel_job
from quick.retrying import attempt_limit
from quick.validation import check_name
from workflow import hooks
from workflow import journal as events
from workflow.definition import Definition, StepKind, Workflow
from workflow.errors import InvalidRunState, InvalidSignal
from workflow.records import (
    FINISHED_STEP,
    TERMINAL_RUN,
    RunStatus,
    StepStatus,
    read_run,
    read_step,
    set_run_status,
    write_run,
    write_step,
)

__all__ = [
    "MODULE",
    "SLEEP_TOPIC",
    "HOOK_TOPIC",
    "StepContext",
    "StepExtension",
    "start_run",
    "signal",
    "cancel_run",
    "pause_run",
    "resume_run",
    "retry_run",
]

#: The module name stored in step items' extension data (see :mod:`quick.extensions`).
MODULE = "workflow"
SLEEP_TOPIC = "workflow.sleep"
HOOK_TOPIC = "workflow.hook"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """What a step's handler sees as ``meta.context``."""

    run_id: str
    workflow: str
    step: str
    #: The outputs of the step's dependencies, by step key.
    results: dict[str, Any]


# -- one run's state within one transaction ---------------------------------------------------


#: Decoded definitions by run id: a run's definition never changes (retry_run keeps it),
#: and decoding it is most of what loading a run costs on every step claim and success.
_DEFINITIONS: dict[str, Definition] = {}
_DEFINITIONS_KEPT = 4096


_DEFINITIONS_LOCK = threading.Lock()


def _definition(run_id: str, record: dict[str, Any]) -> Definition:
    found = _DEFINITIONS.get(run_id)
    if found is None:
        found = Definition.from_record(record["w"], record["df"])
        with _DEFINITIONS_LOCK:  # lanes are threads
            if len(_DEFINITIONS) >= _DEFINITIONS_KEPT:
                _DEFINITIONS.pop(next(iter(_DEFINITIONS)))  # the oldest entry
            _DEFINITIONS[run_id] = found
    return found


class _Run:
    """A run loaded in a transaction: its record, definition and journal writer."""

    def __init__(self, tr: Transaction, run_id: str, now: int, run: dict[str, Any] | None = None):
        self.tr = tr
        self.id = run_id
        self.now = now
        self.record = run if run is not None else read_run(tr, run_id)
        self.definition = _definition(run_id, self.record)
        self.journal = events.Journal(tr, run_id, now)

    @property
    def status(self) -> RunStatus:
        return RunStatus(self.record["rs"])

    def set_status(self, status: RunStatus) -> None:
        set_run_status(self.tr, self.id, self.record, status)
        if status in TERMINAL_RUN:
            self.record["f"] = self.now
            write_run(self.tr, self.id, self.record)

    def steer(self, status: RunStatus, action: str) -> bool:
        """An operator's move to ``status``: False when the run is there already (so a
        retried call does nothing); InvalidRunState when the run has ended."""
        if self.status is status:
            return False
        if self.status in TERMINAL_RUN:
            raise InvalidRunState(self.id, self.status.value, action)
        self.set_status(status)
        return True

    def step(self, key: str) -> dict[str, Any]:
        return read_step(self.tr, self.id, key)

    def save(self, key: str, record: dict[str, Any]) -> None:
        write_step(self.tr, self.id, key, record)

    def hook(self, kind: str, status: str, step: str | None = None, **fields: Any) -> None:
        """Enqueue a hook item when this run's workflow had hooks of ``kind`` at start."""
        if kind not in self.record.get("h", ()):
            return
        event = hooks.HookEvent(
            kind=kind, workflow=self.record["w"], run_id=self.id, status=status, step=step, **fields
        )
        job = prepare(
            self.record["q"],
            HOOK_TOPIC,
            event.to_payload(),
            now=self.now,
            extension={extensions.MODULE_FIELD: MODULE, "xk": "hook"},
        )
        store_new(self.tr, job)


def _make_runnable(run: _Run, key: str) -> None:
    """Start ``key``, whose dependencies have all succeeded (unless the run is paused)."""
    if run.status is not RunStatus.RUNNING:
        return
    step = run.step(key)
    if step["ss"] != StepStatus.WAITING:
        return
    spec = run.definition.steps[key]
    if spec.kind is StepKind.EXTERNAL:
        if "g" in step:
            _succeed(run, key, step, step["g"])
        elif not step.get("aw"):
            step["aw"] = True
            run.save(key, step)
            run.journal.append(events.STEP_AWAITING, key)
        return
    data = {extensions.MODULE_FIELD: MODULE, "ri": run.id, "sk": key, "w": run.record["w"]}
    if spec.kind is StepKind.SLEEP:
        assert spec.seconds is not None
        due = run.now + round(spec.seconds * 1000)
        job = prepare(
            run.record["q"], SLEEP_TOPIC, None, delay=spec.seconds, now=run.now, extension=data
        )
    else:
        assert spec.topic is not None
        due = run.now
        data["dep"] = {dependency: run.step(dependency).get("out") for dependency in spec.after}
        data["to"] = spec.timeout
        attempts = spec.max_attempts
        if step.get("ra"):
            # Held by a pause after failed attempts: the new item gets what is left of
            # the limit the last attempt ran under.
            limit = attempt_limit(step.get("m"), attempts)
            attempts = max(1, limit - step["ra"])
        job = prepare(
            run.record["q"],
            spec.topic,
            run.record["i"],
            priority=spec.priority,
            max_attempts=attempts,
            now=run.now,
            extension=data,
        )
    job_id = store_new(run.tr, job)
    step.update(ss=StepStatus.SCHEDULED.value, j=job_id, n=due)
    run.save(key, step)
    run.journal.append(events.STEP_SCHEDULED, key, due_ms=due, job_id=job_id)


def _schedule_ready(run: _Run, keys: Iterable[str]) -> None:
    """Make runnable each of ``keys`` whose dependencies have all succeeded."""
    for key in keys:
        after = run.definition.steps[key].after
        if all(run.step(dep)["ss"] == StepStatus.SUCCEEDED for dep in after):
            _make_runnable(run, key)


def _succeed(run: _Run, key: str, step: dict[str, Any], output: Any) -> None:
    step.update(ss=StepStatus.SUCCEEDED.value, out=output, f=run.now, e=None)
    run.save(key, step)
    run.journal.append(events.STEP_SUCCEEDED, key, output=output)
    run.hook(hooks.STEP_SUCCEEDED, StepStatus.SUCCEEDED.value, key, output=output)
    _schedule_ready(run, run.definition.successors[key])
    sinks = run.definition.sinks
    finished = key in sinks and run.status not in TERMINAL_RUN
    if finished and all(run.step(s)["ss"] == StepStatus.SUCCEEDED for s in sinks if s != key):
        run.set_status(RunStatus.SUCCEEDED)
        run.journal.append(events.RUN_SUCCEEDED)
        run.hook(hooks.RUN_FINISHED, RunStatus.SUCCEEDED.value)


def _descendants(definition: Definition, key: str) -> set[str]:
    found: set[str] = set()
    todo = list(definition.successors[key])
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(definition.successors[current])
    return found


def _withdraw(run: _Run, step: dict[str, Any]) -> bool:
    """Remove the step's queued item; False when it is running (then it is fenced)."""
    job_id = step.get("j")
    if job_id is None or step["ss"] != StepStatus.SCHEDULED:
        return bool(step["ss"] != StepStatus.RUNNING)
    try:
        cancel_job(run.tr, job_id)
    except JobRunning:
        return False
    return True


def _hold(run: _Run, key: str, step: dict[str, Any]) -> None:
    """Withdraw a queued task step of a paused run; resume schedules it again."""
    if _withdraw(run, step):
        step.update(ss=StepStatus.WAITING.value, j=None)
        run.save(key, step)
        run.journal.append(events.STEP_HELD, key)


def _end_unfinished(run: _Run, status: StepStatus, reason_for: Any) -> None:
    """Move every unfinished step to ``status`` (skipped or cancelled), withdrawing items."""
    kind = events.STEP_SKIPPED if status is StepStatus.SKIPPED else events.STEP_CANCELLED
    for key in run.definition.steps:
        step = run.step(key)
        if step["ss"] in FINISHED_STEP:
            continue
        _withdraw(run, step)
        reason = reason_for(key)
        step.update(ss=status.value, why=reason, f=run.now)
        run.save(key, step)
        run.journal.append(kind, key, reason=reason)


def _fail_run(run: _Run, key: str, step: dict[str, Any], error: str) -> None:
    step.update(ss=StepStatus.FAILED.value, e=error, f=run.now, n=None)
    run.save(key, step)
    run.journal.append(events.STEP_FAILED, key, error=error, attempt=step.get("a", 0))
    run.hook(hooks.STEP_FAILED, StepStatus.FAILED.value, key, error=error)
    run.set_status(RunStatus.FAILED)
    run.record["why"] = f"step {key!r} failed: {error}"
    write_run(run.tr, run.id, run.record)
    downstream = _descendants(run.definition, key)

    def reason(other: str) -> str:
        if other in downstream:
            return f"depends on step {key!r}, which failed"
        return f"the run failed at step {key!r}"

    _end_unfinished(run, StepStatus.SKIPPED, reason)
    run.journal.append(events.RUN_FAILED, key, error=error)
    run.hook(hooks.RUN_FINISHED, RunStatus.FAILED.value, key, error=error)


# -- the queue's side: step items ------------------------------------------------------------


def _sleep_done(payload: Any, meta: Any) -> None:
    """A sleep step's item: becoming visible is the whole point; nothing else to do."""


def _run_hooks(payload: Any, meta: Any) -> None:
    hooks.run_hooks(payload)


_SLEEP_CONFIG = JobConfig(topic=SLEEP_TOPIC, handler=_sleep_done)
_HOOK_CONFIG = JobConfig(topic=HOOK_TOPIC, handler=_run_hooks, max_attempts=10)


class StepExtension:
    """The :class:`quick.extensions.JobExtension` for workflow items."""

    def job_config(self, claim: Claim, registered: JobConfig | None) -> JobConfig | None:
        data = claim.extension or {}
        if data.get("xk") == "hook":
            return _HOOK_CONFIG
        if claim.topic == SLEEP_TOPIC:
            return _SLEEP_CONFIG
        if registered is None or data.get("to") is None:
            return registered
        return dataclasses.replace(registered, timeout=data["to"])

    def context(self, claim: Claim) -> StepContext | None:
        data = claim.extension or {}
        if data.get("xk") == "hook":
            return None
        return StepContext(
            run_id=data["ri"],
            workflow=data["w"],
            step=data["sk"],
            results=dict(data.get("dep", {})),
        )

    def _fenced(
        self, tr: Transaction, claim: Claim, now: int
    ) -> tuple[_Run, str, dict[str, Any]] | None:
        """The run and step this item still stands for; None when it is stale or a hook."""
        data = claim.extension or {}
        if data.get("xk") == "hook":
            return None
        run = _Run(tr, data["ri"], now)
        if run.status in TERMINAL_RUN:
            return None
        key = data["sk"]
        step = run.step(key)
        if step.get("j") != claim.job_id or step["ss"] in FINISHED_STEP:
            return None
        return run, key, step

    def on_claimed(self, tr: Transaction, claim: Claim, now: int) -> None:
        fenced = self._fenced(tr, claim, now)
        if fenced is None:
            return
        run, key, step = fenced
        step.update(ss=StepStatus.RUNNING.value, a=step.get("a", 0) + 1, ra=step.get("ra", 0) + 1)
        step.setdefault("st", now)
        run.save(key, step)
        run.journal.append(events.STEP_CLAIMED, key, attempt=claim.attempt, owner=claim.owner)

    def on_succeeded(self, tr: Transaction, claim: Claim, output: Any, now: int) -> None:
        if claim.topic == SLEEP_TOPIC:
            output = None
        _check_storable("output", output)
        fenced = self._fenced(tr, claim, now)
        if fenced is not None:
            _succeed(*fenced, output)

    def on_failed(
        self,
        tr: Transaction,
        claim: Claim,
        error: str,
        retry_at_ms: int | None,
        now: int,
        max_attempts: int,
    ) -> None:
        fenced = self._fenced(tr, claim, now)
        if fenced is None:
            return
        run, key, step = fenced
        if retry_at_ms is None:
            _fail_run(run, key, step, error)
            return
        step.update(ss=StepStatus.SCHEDULED.value, e=error, n=retry_at_ms, m=max_attempts)
        run.save(key, step)
        run.journal.append(
            events.STEP_RETRYING, key, error=error, attempt=claim.attempt, retry_at_ms=retry_at_ms
        )
        if run.status is RunStatus.PAUSED:
            _hold(run, key, step)


extensions.register(MODULE, StepExtension())


# -- the public operations -------------------------------------------------------------------


def _check_storable(field: str, value: Any) -> None:
    """Refuse, naming ``field``, a value msgpack cannot encode or over half a value's limit
    (run inputs, step outputs and signal payloads are copied into other records)."""
    try:
        size = len(pack_value(value))
    except TypeError as error:
        raise InvalidPayload(f"{field}: {error}") from None
    if size > VALUE_LIMIT // 2:
        raise InvalidArgument(field, f"encodes to {size} bytes; the limit is {VALUE_LIMIT // 2}")


def start_run(
    db_or_tr: Database | Transaction,
    wf: Workflow,
    input: Any,  # noqa: A002 - the issue fixes this public name
    *,
    queue_id: str,
    idempotency_key: str | None = None,
    app: Any = None,
) -> str:
    """Start a run of ``wf`` on queue ``queue_id``; return its run id.

    Joins the caller's transaction when given one. A second start with the same
    (workflow name, ``idempotency_key``) returns the first run's id and writes nothing.

    Args:
        db_or_tr: a database, or the caller's transaction to join.
        wf: the workflow; its definition is validated and stored with the run.
        input: the run's input (msgpack-encodable), every step handler's payload.
        queue_id: the queue (tenant) the run's steps are enqueued on.
        idempotency_key: dedupes starts per workflow name.
        app: when given, every step topic must have a handler in it.

    Raises:
        DefinitionError: the definition is invalid (the subclass says how).
        InvalidArgument / InvalidPayload: a bad queue id, key, or input.
    """
    definition = wf.validate(app)
    check_name("queue_id", queue_id)
    check_name("idempotency_key", idempotency_key, optional=True)
    _check_storable("input", input)
    record = {
        "w": wf.name,
        "rs": RunStatus.RUNNING.value,
        "q": queue_id,
        "i": input,
        "df": definition.to_record(),
        "c": 0,
        "f": None,
        "ik": idempotency_key,
        "h": hooks.kinds_for(wf.name),
    }
    size = len(pack_value(record))
    if size > VALUE_LIMIT:
        raise InvalidArgument(
            "input", f"the run record would be {size} bytes; the limit is {VALUE_LIMIT}"
        )
    return _start(db_or_tr, uuid.uuid4().hex, record)


@transactional
def _start(tr: Transaction, run_id: str, record: dict[str, Any]) -> str:
    if record["ik"] is not None:
        claimed = tr.get(WF_IDEMPOTENCY.pack((record["w"], record["ik"])))
        if claimed is not None:
            return claimed.decode()
        tr.set(WF_IDEMPOTENCY.pack((record["w"], record["ik"])), run_id.encode())
    if tr.get(WF_RUNS.pack((run_id,))) is not None:
        return run_id  # an earlier try of this start committed
    now = now_ms()
    record = dict(record, c=now)
    write_run(tr, run_id, record)
    tr.set(WF_BY_STATUS.pack((record["rs"], record["w"], run_id)), b"")
    run = _Run(tr, run_id, now, record)
    run.journal.append(events.RUN_STARTED, queue_id=record["q"])
    _schedule_ready(run, run.definition.roots)
    return run_id


def signal(db: Database | Transaction, run_id: str, step: str, payload: Any = None) -> None:
    """Complete external step ``step`` of ``run_id`` with ``payload`` as its output.

    A signal that arrives before the step is reached is kept and completes the step
    the moment it is. Safe to retry.

    Raises:
        RunNotFound, InvalidRunState (the run has ended), InvalidSignal (no such
        external step, or it was already signalled).
    """
    _check_storable("payload", payload)
    _signal(db, run_id, step, payload, uuid.uuid4().hex)


@transactional
def _signal(tr: Transaction, run_id: str, key: str, payload: Any, signal_id: str) -> None:
    run = _Run(tr, run_id, now_ms())
    spec = run.definition.steps.get(key)
    if spec is None:
        raise InvalidSignal(run_id, key, "the workflow has no such step")
    if spec.kind is not StepKind.EXTERNAL:
        raise InvalidSignal(run_id, key, f"it is a {spec.kind.value} step, not an external one")
    step = run.step(key)
    if step.get("gi") == signal_id:
        return  # an earlier try of this call committed
    if run.status in TERMINAL_RUN:
        raise InvalidRunState(run_id, run.status.value, "signal")
    if "g" in step or step["ss"] in FINISHED_STEP:
        raise InvalidSignal(run_id, key, "it has already been signalled")
    step.update(g=payload, gi=signal_id)
    run.journal.append(events.SIGNAL_RECEIVED, key, payload=payload)
    if step.get("aw"):
        _succeed(run, key, step, payload)
    else:
        run.save(key, step)


@transactional
def cancel_run(tr: Transaction, run_id: str) -> None:
    """Cancel the run: queued steps are withdrawn, running ones fenced (their results
    change nothing), unfinished steps are marked cancelled. Cancelling a cancelled run
    does nothing.

    Raises:
        RunNotFound; InvalidRunState when the run has succeeded or failed.
    """
    run = _Run(tr, run_id, now_ms())
    if not run.steer(RunStatus.CANCELLED, "cancel"):
        return
    _end_unfinished(run, StepStatus.CANCELLED, lambda key: "the run was cancelled")
    run.journal.append(events.RUN_CANCELLED)
    run.hook(hooks.RUN_FINISHED, RunStatus.CANCELLED.value)


@transactional
def pause_run(tr: Transaction, run_id: str) -> None:
    """Stop new steps from starting: queued task steps are withdrawn (running ones
    finish, timers keep running), and nothing new is scheduled until :func:`resume_run`.

    Raises:
        RunNotFound; InvalidRunState when the run has ended.
    """
    run = _Run(tr, run_id, now_ms())
    if not run.steer(RunStatus.PAUSED, "pause"):
        return
    run.journal.append(events.RUN_PAUSED)
    for key, spec in run.definition.steps.items():
        step = run.step(key)
        if spec.kind is StepKind.TASK and step["ss"] == StepStatus.SCHEDULED:
            _hold(run, key, step)


@transactional
def resume_run(tr: Transaction, run_id: str) -> None:
    """Continue a paused run exactly where it stopped.

    Raises:
        RunNotFound; InvalidRunState when the run has ended.
    """
    run = _Run(tr, run_id, now_ms())
    if not run.steer(RunStatus.RUNNING, "resume"):
        return
    run.journal.append(events.RUN_RESUMED)
    _schedule_ready(run, run.definition.steps)


def retry_run(db: Database | Transaction, run_id: str) -> None:
    """Re-run a failed run's failed and skipped steps, keeping the succeeded ones.

    Raises:
        RunNotFound; InvalidRunState unless the run has failed.
    """
    _retry(db, run_id, uuid.uuid4().hex)


@transactional
def _retry(tr: Transaction, run_id: str, retry_id: str) -> None:
    run = _Run(tr, run_id, now_ms())
    if run.record.get("rt") == retry_id:
        return  # an earlier try of this call committed
    if run.status is not RunStatus.FAILED:
        raise InvalidRunState(run_id, run.status.value, "retry")
    run.record.update(rt=retry_id, f=None, why=None)
    run.set_status(RunStatus.RUNNING)
    reset = []
    for key in run.definition.steps:
        step = run.step(key)
        if step["ss"] in (StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED):
            fresh = {"ss": StepStatus.WAITING.value, "a": step.get("a", 0)}
            if "g" in step:  # a signal that arrived early still counts
                fresh.update(g=step["g"], gi=step.get("gi"))
            run.save(key, fresh)
            reset.append(key)
    run.journal.append(events.RUN_RETRIED, steps=reset)
    _schedule_ready(run, run.definition.steps)
