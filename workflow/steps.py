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

from keyspace.layout import WF_RUNS, WF_STEPS
from keyspace.protocol import Transaction
from quick import extensions
from quick.app import JobConfig
from quick.jobs import Claim
from workflow import journal as events
from workflow.engine import Run, check_storable, fail_run, hold, succeed
from workflow.hook_jobs import HOOK_CONFIG
from workflow.items import HOOK_ITEM, MODULE, SLEEP_TOPIC
from workflow.records import FINISHED_STEP, TERMINAL_RUN, RunStatus, StepStatus

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
        data = claim.extension or {}
        if data.get("xk") == HOOK_ITEM:
            return HOOK_CONFIG
        if claim.topic == SLEEP_TOPIC:
            return _SLEEP_CONFIG
        if registered is None or data.get("to") is None:
            return registered
        return dataclasses.replace(registered, timeout=data["to"])

    def context(self, claim: Claim) -> StepContext | None:
        data = claim.extension or {}
        if data.get("xk") == HOOK_ITEM:
            return None
        return StepContext(
            run_id=data["ri"],
            workflow=data["w"],
            step=data["sk"],
            results=dict(data.get("dep", {})),
        )

    def _fenced(
        self, tr: Transaction, claim: Claim, now: int
    ) -> tuple[Run, str, dict[str, Any]] | None:
        """The run and step this item still stands for; None when it is stale or a hook."""
        data = claim.extension or {}
        if data.get("xk") == HOOK_ITEM:
            return None
        key = data["sk"]
        # The run and the step, in one round trip (each read below still adds its conflict).
        tr.get_many([WF_RUNS.pack((data["ri"],)), WF_STEPS.pack((data["ri"], key))], snapshot=True)
        run = Run(tr, data["ri"], now)
        if run.status in TERMINAL_RUN:
            return None
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
        run, key, step = fenced
        if retry_at_ms is None:
            fail_run(run, key, step, error)
            return
        step.update(ss=StepStatus.SCHEDULED.value, e=error, n=retry_at_ms, m=max_attempts)
        run.save(key, step)
        run.journal.append(
            events.STEP_RETRYING, key, error=error, attempt=claim.attempt, retry_at_ms=retry_at_ms
        )
        if run.status is RunStatus.PAUSED:
            hold(run, key, step)


extensions.register(MODULE, StepExtension())
