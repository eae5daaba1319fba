"""Awaiting a run's result: :func:`result` waits on a watch of the run record, never polls.

Each look is one transaction: an ended run gives its result (or its failure); a run
still going sets a watch on its record, which every status change rewrites, and the
waiter sleeps until the watch fires (or fails: then it looks again after
:func:`keyspace.retry.watch_retry_pause`) or the timeout passes. :mod:`workflow.aio`
awaits the same looks from asyncio or trio.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from keyspace.layout import WF_RUNS
from keyspace.protocol import Database, Transaction, Watch
from keyspace.retry import watch_retry_pause
from quick.jobs import now_ms
from quick.results import check_timeout
from quick.validation import check_name
from workflow.children import failed_step, run_output
from workflow.engine import Run
from workflow.errors import ResultTimeout, RunFailed
from workflow.mapping import MapOutputs, as_outputs, map_outputs
from workflow.records import RunStatus

__all__ = ["result", "Look", "look", "resolve", "deadline_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Look:
    """One look at a run: ended (``output`` set) or still ``status`` (``watch`` set)."""

    status: str
    output: Any = None
    watch: Watch | None = None


def look(tr: Transaction, run_id: str, watch: bool = True) -> Look:
    """The run's result if it ended; else a watch on its record (committed with ``tr``).

    Raises:
        RunNotFound, CorruptRun; RunFailed when it failed or was cancelled.
    """
    run = Run(tr, run_id, now_ms())
    if run.status is RunStatus.SUCCEEDED:
        return Look(status=run.status, output=run_output(run))
    if run.status is RunStatus.FAILED:
        step, error = failed_step(tr.snapshot, run_id)
        raise RunFailed(run_id, "failed", step, error or run.record.reason)
    if run.status is RunStatus.CANCELLED:
        raise RunFailed(run_id, "was cancelled", None, None)
    return Look(status=run.status, watch=tr.watch(WF_RUNS.pack((run_id,))) if watch else None)


def resolve(db: Database, output: Any) -> Any:
    """``output`` with a map's outputs read in full when it refers to them."""
    found = as_outputs(output)
    if isinstance(found, MapOutputs):
        return map_outputs(db, found.run_id, found.step)
    if isinstance(output, dict):
        return {key: resolve(db, value) for key, value in output.items()}
    return output


def result(db: Database, run_id: str, timeout: float | None = None) -> Any:
    """Wait for run ``run_id`` to end and return its result: the output of its final
    step, or a dict by step key when several steps are final (a map's outputs read in
    full).

    Args:
        db: the database (the wait spans transactions, so not a transaction).
        run_id: the run to wait for.
        timeout: seconds to wait at most (None: as long as it takes).

    Raises:
        RunFailed: the run failed (naming the failed step and its error) or was cancelled.
        ResultTimeout: it had not ended within ``timeout``.
        RunNotFound, CorruptRun: no such run, or its records do not decode.
        InvalidArgument: a bad ``run_id`` or ``timeout``.
    """
    check_name("run_id", run_id)
    deadline = deadline_of(timeout)
    failures = 0
    while True:
        seen = db.transact(look, run_id)
        if seen.watch is None:
            return resolve(db, seen.output)
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                raise ResultTimeout(run_id, seen.status, timeout or 0.0)
            seen.watch.wait(remaining)
            failures = failures + 1 if seen.watch.failed else 0
        finally:
            seen.watch.cancel()
        time.sleep(watch_retry_pause(failures, random.random(), remaining))


def deadline_of(timeout: float | None) -> float | None:
    """The monotonic time ``timeout`` seconds from now (None: none); InvalidArgument if
    ``timeout`` is not what :func:`quick.result` takes either."""
    wait = check_timeout(timeout)
    return None if wait is None else time.monotonic() + wait
