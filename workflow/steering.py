"""Steering runs: the operator's moves on a run that has started.

Each is one transaction and safe to retry: :func:`signal` completes an external step,
:func:`cancel_run`, :func:`pause_run` and :func:`resume_run` move the run's status, and
:func:`retry_run` re-runs a failed run's unfinished steps.
"""

from __future__ import annotations

from typing import Any

from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick.jobs import now_ms
from workflow import journal as events
from workflow.definition import StepKind
from workflow.engine import (
    Run,
    cancel,
    check_storable,
    hold,
    new_id,
    schedule_ready,
    succeed,
)
from workflow.errors import InvalidRunState, InvalidSignal
from workflow.mapping import page
from workflow.records import FINISHED_STEP, TERMINAL_RUN, RunStatus, StepRecord, StepStatus

__all__ = ["signal", "cancel_run", "pause_run", "resume_run", "retry_run"]


def signal(db: Database | Transaction, run_id: str, step: str, payload: Any = None) -> None:
    """Complete external step ``step`` of ``run_id`` with ``payload`` as its output.

    A signal that arrives before the step is reached is kept and completes the step
    the moment it is. Safe to retry.

    Raises:
        RunNotFound, InvalidRunState (the run has ended), InvalidSignal (no such
        external step, or it was already signalled).
    """
    check_storable("payload", payload)
    _signal(db, run_id, step, payload, new_id())


@transactional
def _signal(tr: Transaction, run_id: str, key: str, payload: Any, signal_id: str) -> None:
    run = Run(tr, run_id, now_ms())
    spec = run.definition.steps.get(key)
    if spec is None:
        raise InvalidSignal(run_id, key, "the workflow has no such step")
    if spec.kind is not StepKind.EXTERNAL:
        raise InvalidSignal(run_id, key, f"it is a {spec.kind.value} step, not an external one")
    step = run.step(key)
    if step.signal_id == signal_id:
        return  # an earlier try of this call committed
    if run.status in TERMINAL_RUN:
        raise InvalidRunState(run_id, run.status.value, "signal")
    if step.signalled or step.status in FINISHED_STEP:
        raise InvalidSignal(run_id, key, "it has already been signalled")
    step = step.evolve(signalled=True, signal=payload, signal_id=signal_id)
    run.journal.append(events.SIGNAL_RECEIVED, key, payload=payload)
    if step.awaiting:
        succeed(run, step, payload)
    else:
        run.save(step)


@transactional
def cancel_run(tr: Transaction, run_id: str) -> None:
    """Cancel the run: queued steps are withdrawn, running ones fenced (their results
    change nothing), unfinished steps are marked cancelled. Cancelling a cancelled run
    does nothing.

    Raises:
        RunNotFound; InvalidRunState when the run has succeeded or failed.
    """
    run = Run(tr, run_id, now_ms())
    if run.status is RunStatus.CANCELLED:
        return
    if run.status in TERMINAL_RUN:
        raise InvalidRunState(run_id, run.status.value, "cancel")
    cancel(run)


@transactional
def pause_run(tr: Transaction, run_id: str) -> None:
    """Stop new steps from starting: queued task steps are withdrawn (running ones
    finish, timers keep running), and nothing new is scheduled until :func:`resume_run`.

    Raises:
        RunNotFound; InvalidRunState when the run has ended.
    """
    run = Run(tr, run_id, now_ms())
    if not run.steer(RunStatus.PAUSED, "pause"):
        return
    run.journal.append(events.RUN_PAUSED)
    run.prefetch(run.definition.steps)
    run.prefetch_items(run.definition.steps)
    for key, spec in run.definition.steps.items():
        step = run.step(key)
        if spec.kind in (StepKind.TASK, StepKind.BRANCH) and step.status == StepStatus.SCHEDULED:
            hold(run, step)
        elif spec.kind is StepKind.MAP and step.status == StepStatus.RUNNING:
            page(run, key, 0)  # holds its queued instances: a page now, a pager for the rest


@transactional
def resume_run(tr: Transaction, run_id: str) -> None:
    """Continue a paused run exactly where it stopped.

    Raises:
        RunNotFound; InvalidRunState when the run has ended.
    """
    run = Run(tr, run_id, now_ms())
    if not run.steer(RunStatus.RUNNING, "resume"):
        return
    run.journal.append(events.RUN_RESUMED)
    schedule_ready(run, run.definition.steps)
    for key, spec in run.definition.steps.items():
        if spec.kind is StepKind.MAP and run.step(key).status == StepStatus.RUNNING:
            page(run, key, 0)  # schedules its held instances: a page now, a pager for the rest


def retry_run(db: Database | Transaction, run_id: str) -> None:
    """Re-run a failed run's failed and skipped steps, keeping the succeeded ones.

    Raises:
        RunNotFound; InvalidRunState unless the run has failed.
    """
    _retry(db, run_id, new_id())


@transactional
def _retry(tr: Transaction, run_id: str, retry_id: str) -> None:
    run = Run(tr, run_id, now_ms())
    if run.record.retry_id == retry_id:
        return  # an earlier try of this call committed
    if run.status is not RunStatus.FAILED:
        raise InvalidRunState(run_id, run.status.value, "retry")
    run.set_status(RunStatus.RUNNING, retry_id=retry_id, finished_ms=None, reason=None)
    run.prefetch(run.definition.steps)
    reset = []
    for key in run.definition.steps:
        step = run.step(key)
        if step.status in (StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED):
            if step.pruned:
                continue  # left out by a branch that still stands
            fresh = StepRecord.waiting(run_id, key).evolve(
                attempts=step.attempts,
                # a map keeps what its instances that succeeded did (they are not rerun)
                done=step.done,
                out_bytes=step.out_bytes,
                # a signal that arrived early still counts
                signalled=step.signalled,
                signal=step.signal,
                signal_id=step.signal_id,
            )
            run.save(fresh)
            reset.append(key)
    run.journal.append(events.RUN_RETRIED, steps=reset)
    schedule_ready(run, run.definition.steps)
