"""The queue's side of a workflow: settling step items as they are claimed, completed, failed.

The queue calls :class:`StepExtension` inside its own transaction (see
:mod:`quick.extensions`), so an item's fenced completion, the step's output, the journal
event and the successors it makes runnable commit together. A settlement for an item that
no longer stands for its step (an old attempt, a cancelled or failed run) changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue
from keyspace.layout import WF_INSTANCES
from keyspace.protocol import Transaction
from quick import extensions
from quick.app import JobConfig
from quick.enqueueing import queue_reads
from quick.jobs import Claim
from workflow import journal as events
from workflow.engine import (
    Run,
    check_storable,
    definition_of,
    fail_run,
    hold,
    succeed,
    succeed_reads,
)
from workflow.errors import CorruptRun
from workflow.hook_jobs import HOOK_CONFIG
from workflow.items import MAP_TOPIC, MODULE, SLEEP_TOPIC, StepItem, is_hook, is_pager
from workflow.mapping import (
    as_outputs,
    enqueue_pager,
    instance_failed,
    instance_succeeded,
    page,
)
from workflow.records import (
    FINISHED_STEP,
    TERMINAL_RUN,
    RunStatus,
    StepRecord,
    StepStatus,
    decode_run,
    read_instance,
    read_step,
    run_key,
    step_key,
)

__all__ = ["StepContext", "StepExtension"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """What a step's handler sees as ``meta.context``."""

    run_id: str
    workflow: str
    step: str
    #: The outputs of the step's dependencies, by step key (a map's: a list, or a
    #: :class:`workflow.MapOutputs` when they are too large to travel inline).
    results: dict[str, Any]
    #: The run's input (a step's payload too; a map instance's payload is its item).
    input: Any = None
    #: A map instance's index in the list it maps (None: not an instance).
    index: int | None = None


def _sleep_done(payload: Any, meta: Any) -> None:
    """A sleep step's item: becoming visible is the whole point; nothing else to do."""


_SLEEP_CONFIG = JobConfig(topic=SLEEP_TOPIC, handler=_sleep_done)
#: A map's pager item: its settlement does the work (:func:`workflow.mapping.page`).
_PAGER_CONFIG = JobConfig(topic=MAP_TOPIC, handler=_sleep_done, max_attempts=10)


def _release(run: Run, key: str, index: int, job_id: str) -> None:
    """An instance whose run ended while its job was out: it counts as not run, so a
    ``retry_run`` runs it again (its map's count of successes never included it)."""
    instance = read_instance(run.tr, run.id, key, index)
    if instance.job_id == job_id and instance.status not in FINISHED_STEP:
        run.save(instance.evolve(status=StepStatus.SKIPPED, job_id=None, reason="the run ended"))


class StepExtension:
    """The :class:`quick.extensions.JobExtension` for workflow items."""

    def job_config(self, claim: Claim, registered: JobConfig | None) -> JobConfig | None:
        if is_hook(claim.extension):
            return HOOK_CONFIG
        if is_pager(claim.extension):
            return _PAGER_CONFIG
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
        if is_hook(claim.extension) or is_pager(claim.extension):
            return None
        item = StepItem.from_record(claim.extension)
        results = {key: as_outputs(value) for key, value in (item.results or {}).items()}
        return StepContext(
            run_id=item.run_id,
            workflow=item.workflow,
            step=item.step,
            results=results,
            input=claim.payload if item.index is None else item.input,
            index=item.index,
        )

    def prefetch(self, tr: Transaction, claims: Sequence[Claim], *, settling: bool) -> None:
        """Read what the hooks of ``claims`` will read, as snapshot reads (adding no
        conflicts; each hook's own read adds its conflict from the transaction's cache):
        every run and step record at once, then, when ``settling``, what each step's
        success reads (its successors, their dependencies, the final steps, its queue's
        keys for the next item). Two round trips for a whole batch, not a few per step."""
        items: list[StepItem] = []
        keys: list[bytes] = []
        for claim in claims:
            if is_hook(claim.extension) or is_pager(claim.extension):
                continue
            try:
                item = StepItem.from_record(claim.extension)
            except CorruptValue:
                continue  # its hooks name the bad data
            items.append(item)
            keys += [run_key(item.run_id), step_key(item.run_id, item.step)]
            if item.index is not None:
                keys.append(WF_INSTANCES.pack((item.run_id, item.step, item.index)))
        if not keys:
            return
        values = dict(zip(keys, tr.get_many(keys, snapshot=True), strict=True))
        if not settling:
            return
        more: dict[bytes, None] = {}
        for item in items:
            data = values.get(run_key(item.run_id))
            if data is None or item.index is not None:
                continue
            try:
                record = decode_run(item.run_id, data)
                definition = definition_of(record)
            except CorruptRun:
                continue  # the settlement names it
            if item.step not in definition.steps:
                continue
            for key in succeed_reads(definition, item.step):
                more[step_key(item.run_id, key)] = None
            more.update(dict.fromkeys(queue_reads(record.queue)))
        if more:
            tr.get_many(list(more), snapshot=True)

    def _fenced(
        self, tr: Transaction, claim: Claim, now: int, claiming: bool = False
    ) -> tuple[Run, StepRecord] | None:
        """The run and step (or map instance) this item still stands for; None when it
        is stale, a hook or a pager.

        ``claiming``: a map instance's claim reads its map step without a conflict.
        Every instance success rewrites the map step (its count), so a conflict there
        would make each claim round of a map's instances retry behind each settlement.
        The claim needs none: a map that ends meanwhile withdraws the instance's job or
        writes its record, and the claim reads both serializably; an instance claimed
        just as its map ends is fenced when it settles, as one claimed just before."""
        if is_hook(claim.extension) or is_pager(claim.extension):
            return None
        item = StepItem.from_record(claim.extension)
        # The run and the step, in one round trip (each read below still adds its conflict).
        keys = [run_key(item.run_id), step_key(item.run_id, item.step)]
        if item.index is not None:
            keys.append(WF_INSTANCES.pack((item.run_id, item.step, item.index)))
        tr.get_many(keys, snapshot=True)
        run = Run(tr, item.run_id, now)
        if run.status in TERMINAL_RUN:
            if item.index is not None:
                _release(run, item.step, item.index, claim.job_id)
            return None
        if item.index is not None and claiming:
            step = read_step(tr.snapshot, item.run_id, item.step)
        else:
            step = run.step(item.step)
        if item.index is not None:
            if step.status != StepStatus.RUNNING:
                return None
            step = read_instance(tr, item.run_id, item.step, item.index)
        if step.job_id != claim.job_id or step.status in FINISHED_STEP:
            return None
        return run, step

    def on_claimed(self, tr: Transaction, claim: Claim, now: int) -> None:
        fenced = self._fenced(tr, claim, now, claiming=True)
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
        if step.index is None:  # an instance's claims are counted in its record only
            run.journal.append(
                events.STEP_CLAIMED, step.key, attempt=claim.attempt, owner=claim.owner
            )

    def on_succeeded(self, tr: Transaction, claim: Claim, output: Any, now: int) -> None:
        if is_pager(claim.extension):
            pager = StepItem.from_record(claim.extension)
            page(Run(tr, pager.run_id, now), pager.step, pager.index or 0)
            return
        if claim.topic == SLEEP_TOPIC:
            output = None
        check_storable("output", output)
        fenced = self._fenced(tr, claim, now)
        if fenced is None:
            return
        run, step = fenced
        if step.index is not None:
            instance_succeeded(run, step, output)
            return
        branches = run.definition.steps[step.key].branches
        if branches is not None and (not isinstance(output, str) or output not in branches):
            names = ", ".join(repr(name) for name in branches)
            fail_run(run, step, f"returned {output!r}, which is not a declared branch ({names})")
            return
        succeed(run, step, output)

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
            if step.index is not None:
                instance_failed(run, step, error)
            else:
                fail_run(run, step, error)
            return
        step = step.evolve(
            status=StepStatus.SCHEDULED, error=error, due_ms=retry_at_ms, max_attempts=max_attempts
        )
        run.save(step)
        kind = events.STEP_RETRYING if step.index is None else events.INSTANCE_RETRYING
        run.journal.append(
            kind,
            step.key,
            error=error,
            attempt=claim.attempt,
            retry_at_ms=retry_at_ms,
            **({} if step.index is None else {"index": step.index}),
        )
        if run.status is RunStatus.PAUSED:
            if step.index is None:
                hold(run, step)
            else:
                enqueue_pager(run, step.key, step.index)


extensions.register(MODULE, StepExtension())
