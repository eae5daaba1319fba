"""Child steps: a step that starts a run of another workflow and completes with its result.

Theory of operation
-------------------
* The child's definition was resolved when the parent started and is stored in the
  child step's definition (:meth:`workflow.Workflow.validate`), so a chain of child
  runs that would start itself is refused before anything is written, and a child
  runs the code its parent started with, whatever is deployed since.
* When the step becomes runnable, the child run is started in the same transaction
  (its record names its parent: run and step), and the step records the child's id
  and runs.
* When the child run ends, the transaction that ends it settles the parent's step
  (:func:`child_ended`, called by :meth:`workflow.engine.Run.set_status`): fenced by
  the child id the step holds, success gives the step the child's result; failure or
  cancellation starts another child while the step has attempts left, else fails it.
* Cancelling (or failing) the parent cancels a running child in the same transaction
  (:func:`workflow.engine.end_unfinished`), and the child's own children with it.
"""

from __future__ import annotations

from typing import Any

from keyspace.codec import pack_value
from keyspace.layout import WF_BY_STATUS
from keyspace.limits import VALUE_LIMIT
from workflow import engine, hooks
from workflow import journal as events
from workflow.definition import StepKind
from workflow.engine import (
    CHILD_ENDED,
    STARTS,
    WITHDRAWS,
    Run,
    fail_run,
    new_id,
    schedule_ready,
    succeed,
)
from workflow.records import (
    TERMINAL_RUN,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    read_steps,
    settled,
    write_run,
)

__all__ = ["start_child", "child_ended", "run_output"]


def _child_input(run: Run, step: StepRecord) -> Any:
    after = run.definition.steps[step.key].after
    if not after:
        return run.record.input
    if len(after) == 1:
        return run.step(after[0]).output
    return {key: run.step(key).output for key in after}


def start_child(run: Run, step: StepRecord) -> None:
    """Start the child run of ``step`` (runnable now) and mark the step running."""
    spec = run.definition.steps[step.key]
    assert spec.child is not None
    assert spec.child_definition is not None
    child_input = _child_input(run, step)
    size = len(pack_value(child_input))
    if size > VALUE_LIMIT // 2:
        fail_run(
            run,
            step,
            f"the child run's input encodes to {size} bytes; the limit is {VALUE_LIMIT // 2}",
        )
        return
    record = RunRecord(
        id=new_id(),  # new in every try of this body: only the committed try's child exists
        workflow=spec.child,
        status=RunStatus.RUNNING,
        queue=spec.queue or run.record.queue,
        input=child_input,
        definition=spec.child_definition,
        created_ms=run.now,
        hooks=tuple(hooks.kinds_for(spec.child)),
        parent=(run.id, step.key),
    )
    write_run(run.tr, record)
    run.tr.set(WF_BY_STATUS.pack((record.status.value, record.workflow, record.id)), b"")
    child = Run(run.tr, record.id, run.now, record)
    child.journal.append(events.RUN_STARTED, queue_id=record.queue, parent=[run.id, step.key])
    run.save(
        step.evolve(
            status=StepStatus.RUNNING,
            child_run=record.id,
            attempts=step.attempts + 1,
            counted=step.counted + 1,
            started_ms=run.now if step.started_ms is None else step.started_ms,
        )
    )
    run.journal.append(
        events.STEP_CLAIMED, step.key, attempt=step.attempts + 1, child_run=record.id
    )
    schedule_ready(child, child.definition.roots)


def run_output(run: Run) -> Any:
    """A succeeded run's result: its final step's output, or a dict by step key of the
    final steps that ran when it has several."""
    sinks = run.definition.sinks
    if len(sinks) == 1:
        return run.step(sinks[0]).output
    steps = {key: run.step(key) for key in sinks}
    return {key: step.output for key, step in steps.items() if not step.pruned and settled(step)}


def child_ended(child: Run) -> None:
    """Settle the parent's child step now that run ``child`` has ended (see the module doc)."""
    assert child.record.parent is not None
    parent_id, key = child.record.parent
    parent = Run(child.tr, parent_id, child.now)
    if parent.status in TERMINAL_RUN:
        return
    step = parent.step(key)
    if step.child_run != child.id or step.status != StepStatus.RUNNING:
        return
    if child.status is RunStatus.SUCCEEDED:
        succeed(parent, step, run_output(child))
        return
    why = child.record.reason or f"it was {child.status.value}"
    error = f"child run {child.id} {child.status.value}: {why}"
    limit = parent.definition.steps[key].max_attempts or 1
    if step.counted < limit and parent.status is RunStatus.RUNNING:
        parent.journal.append(events.STEP_RETRYING, key, error=error, attempt=step.attempts)
        start_child(parent, step.evolve(error=error))
        return
    fail_run(parent, step, error)


def _cancel_child(run: Run, step: StepRecord) -> bool:
    """A child step's running child run is cancelled with its parent (and its own)."""
    if step.child_run is not None and step.status == StepStatus.RUNNING:
        engine.cancel(Run(run.tr, step.child_run, run.now))
    return True


STARTS[StepKind.CHILD] = start_child
WITHDRAWS[StepKind.CHILD] = _cancel_child
CHILD_ENDED.append(child_ended)


def failed_step(tr: Any, run_id: str) -> tuple[str | None, str | None]:
    """The key and error of the run's failed step (None, None when none failed)."""
    for key, step in read_steps(tr, run_id).items():
        if step.status == StepStatus.FAILED:
            return key, step.error
    return None, None
