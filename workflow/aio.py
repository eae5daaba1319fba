"""Workflows' async API: :func:`start_run` and :func:`signal` awaited, on asyncio and trio.

The same sync functions run (:func:`workflow.start_run`, :func:`workflow.signal`); only
the waiting differs, as in :mod:`quick.aio`: given a database the whole call runs in
the bounded pool, given a :class:`quick.aio.AsyncTransaction` it joins it.
"""

from __future__ import annotations

from typing import Any

from keyspace.protocol import Database
from quick.aio import AsyncTransaction, run_joined
from quick.errors import InvalidArgument
from quick.validation import check_name
from workflow.definition import Workflow
from workflow.starting import start_run as start_run_sync
from workflow.steering import signal as signal_sync

__all__ = ["signal", "start_run"]


async def start_run(
    db_or_tr: Database | AsyncTransaction,
    wf: Workflow,
    input: Any,  # noqa: A002 - the sync form's name
    *,
    queue_id: str,
    idempotency_key: str | None = None,
    app: Any = None,
) -> str:
    """:func:`workflow.start_run`, awaited; see it for the arguments and errors."""
    if not isinstance(wf, Workflow):
        raise InvalidArgument("wf", f"must be a Workflow, not {type(wf).__name__}")
    return await run_joined(
        db_or_tr,
        start_run_sync,
        wf,
        input,
        queue_id=queue_id,
        idempotency_key=idempotency_key,
        app=app,
    )


async def signal(
    db_or_tr: Database | AsyncTransaction, run_id: str, step: str, payload: Any = None
) -> None:
    """:func:`workflow.signal`, awaited; see it for the errors."""
    check_name("run_id", run_id)
    check_name("step", step)
    await run_joined(db_or_tr, signal_sync, run_id, step, payload)
