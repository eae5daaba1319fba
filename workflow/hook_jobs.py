"""Hook items: the queue items that call a run's hooks after the fact they report commits.

:func:`enqueue_hook` runs inside the transaction that records a step's or run's end, so
the hook item commits with the fact or not at all; a consumer then runs it with
:data:`HOOK_CONFIG`, which calls the functions :mod:`workflow.hooks` holds (at least once,
retried when this process has none registered).
"""

from __future__ import annotations

from typing import Any

from keyspace.protocol import Transaction
from quick.app import JobConfig
from quick.enqueueing import prepare, store_new
from workflow import hooks
from workflow.items import HOOK_TOPIC, hook_item
from workflow.records import RunRecord

__all__ = ["HOOK_CONFIG", "enqueue_hook"]


def _run_hooks(payload: Any, meta: Any) -> None:
    hooks.run_hooks(payload)


#: How a hook item runs: ten attempts, for a worker that has not imported the hook yet.
HOOK_CONFIG = JobConfig(topic=HOOK_TOPIC, handler=_run_hooks, max_attempts=10)


def enqueue_hook(
    tr: Transaction,
    run: RunRecord,
    now: int,
    kind: str,
    status: str,
    step: str | None = None,
    **fields: Any,
) -> None:
    """Enqueue a hook item when ``run`` had hooks of ``kind`` at start."""
    if kind not in run.hooks:
        return
    event = hooks.HookEvent(
        kind=kind, workflow=run.workflow, run_id=run.id, status=status, step=step, **fields
    )
    job = prepare(
        run.queue, HOOK_TOPIC, event.to_payload(), now=now, extension=hook_item(), trace=run.trace
    )
    store_new(tr, job, first_try=True)  # a fresh id in every try: nothing can hold it
