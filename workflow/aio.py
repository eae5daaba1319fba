"""Workflows' async API: :func:`start_run`, :func:`signal` and :func:`result` awaited,
on asyncio and trio.

The same sync functions run (:func:`workflow.start_run`, :func:`workflow.signal`, the
looks of :func:`workflow.result`); only the waiting differs, as in :mod:`quick.aio`:
given a database the whole call runs in the bounded pool, given a
:class:`quick.aio.AsyncTransaction` it joins it. :func:`result` waits for its run's
watch as :func:`quick.aio.result` does (:func:`quick.aio_waiting.await_watch`: neither
the loop nor the pool is held); cancelling the caller cancels the watch.
"""

from __future__ import annotations

import random
import time
from typing import Any

from keyspace.protocol import Database
from keyspace.retry import watch_retry_pause
from quick.aio import AsyncTransaction, run_joined
from quick.aio_waiting import await_watch, run_blocking, sleep
from quick.errors import InvalidArgument
from quick.validation import check_name
from workflow.definition import Workflow
from workflow.errors import ResultTimeout
from workflow.results import deadline_of, look, resolve
from workflow.starting import start_run as start_run_sync
from workflow.steering import signal as signal_sync

__all__ = ["result", "signal", "start_run"]


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


async def result(db: Database, run_id: str, timeout: float | None = None) -> Any:
    """:func:`workflow.result`, awaited: the run's result, waiting on a watch (no polling).

    Raises:
        RunFailed, ResultTimeout, RunNotFound, CorruptRun, InvalidArgument: as the sync form.
    """
    check_name("run_id", run_id)
    deadline = deadline_of(timeout)
    failures = 0
    while True:
        seen = await run_blocking(lambda: db.transact(look, run_id))
        if seen.watch is None:
            return await run_blocking(resolve, db, seen.output)
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                raise ResultTimeout(run_id, seen.status, timeout or 0.0)
            await await_watch(seen.watch, remaining)
            failures = failures + 1 if seen.watch.failed else 0
        finally:
            seen.watch.cancel()
        pause = watch_retry_pause(failures, random.random(), remaining)
        if pause:
            await sleep(pause)
