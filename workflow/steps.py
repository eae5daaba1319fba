"""The queue's side of a workflow: settling step items as they are claimed, completed, failed.

The queue calls :class:`StepExtension` inside its own transaction (see
:mod:`quick.extensions`), so an item's fenced completion, the step's output, the journal
event and the successors it makes runnable commit together. A settlement for an item that
no longer stands for its step (an old attempt, a cancelled or failed run) changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue
from keyspace.layout import WF_RUNS, WF_STEPS
from keyspace.protocol import Transaction
from quick import extensions
from quick.app import JobConfig
from quick.jobs import Claim
from workflow import journal as events
from workflow.engine import Run, check_storable, fail_run, hold, succeed
from workflow.hook_jobs import HOOK_CONFIG
from workflow.items import MODULE, SLEEP_TOPIC, StepItem, is_hook
from workflow.records import FINISHED_STEP, TERMINAL_RUN, RunStatus, StepRecord, StepStatus

__all__ = ["StepContext", "StepExtension"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """What a step's handler sees as ``meta.context``."""

    run_id: str
    workflow: str
    step: str
    #: The outputs of the step's dependencies, by step key.
    results: dict[str, Any]


def _sleep_done(payload: Any, meta: Any) -> None:
    """A sleep step's item: becoming visible is the whole point; nothing else to do."""


_SLEEP_CONFIG = JobConfig(topic=SLEEP_TOPIC, handler=_sleep_done)


class StepExtension:
    """The :class:`quick.extensions.JobExtension` for workflow items."""

    def job_config(self, claim: Claim, registered: JobConfig | None) -> JobConfig | None:
        if is_hook(claim.extension):
            return HOOK_CONFIG
        if claim.topic == SLEEP_TOPIC:
            return _SLEEP_CONFIG
        if registered is None:
            return registered
        try:
            timeout = StepItem.from_record(claim.extension).timeout
        except CorruptValue:
            return registered  # the step's context and settlement name the bad data
        return registered if timeout is None else dataclasses.replace(registered, timeout=timeout)

    def context(self, claim: Claim) -> StepContext | None:
        if is_hook(claim.extension):
            return None
        item = StepItem.from_record(claim.extension)
        return StepContext(
            run_id=item.run_id,
            workflow=item.workflow,
            step=item.step,
            results=dict(item.results or {}),
        )

    def _fenced(self, tr: Transaction, claim: Claim, now: int) -> tuple[Run, StepRecord] | None:
        """The run and step this item still stands for; None when it is stale or a hook."""
        if is_hook(claim.extension):
            return None
        item = StepItem.from_record(claim.extension)
        # The run and the step, in one round trip (each read below still adds its conflict).
        tr.get_many(
            [WF_RUNS.pack((item.run_id,)), WF_STEPS.pack((item.run_id, item.step))], snapshot=True
        )
        run = Run(tr, item.run_id, now)
        if run.status in TERMINAL_RUN:
            return None
        step = run.step(item.step)
        if step.job_id != claim.job_id or step.status in FINISHED_STEP:
            return None
        return run, step

    def on_claimed(self, tr: Transaction, claim: Claim, now: int) -> None:
        fenced = self._fenced(tr, claim, now)
        if fenced is None:
            return
        run, step = fenced
        run.save(
            step.evolve(
                status=StepStatus.RUNNING,
                attempts=step.attempts + 1,
                counted=step.counted + 1,
                started_ms=now if step.started_ms is None else step.started_ms,
            )
        )
        run.journal.append(events.STEP_CLAIMED, step.key, attempt=claim.attempt, owner=claim.owner)

    def on_succeeded(self, tr: Transaction, claim: Claim, output: Any, now: int) -> None:
        if claim.topic == SLEEP_TOPIC:
            output = None
        check_storable("output", output)
        fenced = self._fenced(tr, claim, now)
        if fenced is not None:
            succeed(*fenced, output)

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
        run, step = fenced
        if retry_at_ms is None:
            fail_run(run, step, error)
            return
        step = step.evolve(
            status=StepStatus.SCHEDULED, error=error, due_ms=retry_at_ms, max_attempts=max_attempts
        )
        run.save(step)
        run.journal.append(
            events.STEP_RETRYING,
            step.key,
            error=error,
            attempt=claim.attempt,
            retry_at_ms=retry_at_ms,
        )
        if run.status is RunStatus.PAUSED:
            hold(run, step)


extensions.register(MODULE, StepExtension())
