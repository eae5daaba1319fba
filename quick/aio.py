"""quick's async API: the producer calls of request handlers, on asyncio and on trio.

Each function has the name and arguments of its sync form and calls that same sync
function; only the waiting differs (:mod:`quick.aio_waiting`). Given a database, the
whole sync call (its own retry loop, its ids made before it) runs in the bounded pool;
given an :class:`AsyncTransaction` (from :func:`transact`), it joins that transaction
and commits with the caller's own writes.

    async def place_order(tr, order_id):
        tr.set(b"orders/" + order_id.encode(), b"placed")
        await quick.aio.enqueue(tr, "tenant-42", "ledger:book", {}, job_id=f"book:{order_id}")

    await quick.aio.transact(db, place_order, "o-1")

Bad arguments raise :class:`~quick.errors.InvalidArgument` before anything is written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import Any, overload

import quick
from keyspace.protocol import Database
from keyspace.retry import watch_retry_pause
from quick.aio_transaction import (
    AsyncReads,
    AsyncTransaction,
    check_database,
    run_joined,
    transact,
)
from quick.aio_waiting import await_watch, blocking, sleep
from quick.enqueueing import JobSpec
from quick.errors import InvalidArgument, ResultTimeout
from quick.flow import Throttled
from quick.jobs import DEFAULT_PRIORITY, JobState
from quick.results import PENDING, check_timeout, look_or_watch
from quick.validation import check_name

__all__ = [
    "AsyncReads",
    "AsyncTransaction",
    "cancel",
    "enqueue",
    "enqueue_many",
    "job_state",
    "result",
    "run_joined",
    "transact",
]


@overload
async def enqueue(
    db_or_tr: Database | AsyncTransaction,
    queue_id: str,
    topic: str,
    payload: Any,
    *,
    priority: int = ...,
    delay: Any = ...,
    at: Any = ...,
    max_attempts: int | None = ...,
    job_id: str | None = ...,
    unique_key: str | None = ...,
    limit_keys: list[str] | tuple[str, ...] | None = ...,
    depends_on: Iterable[str] | None = ...,
    if_dependency_fails: str = ...,
    debounce: Any = ...,
    throttle: None = ...,
    key: str | None = ...,
    when_throttled: str = ...,
) -> str: ...


@overload
async def enqueue(
    db_or_tr: Database | AsyncTransaction,
    queue_id: str,
    topic: str,
    payload: Any,
    *,
    priority: int = ...,
    delay: Any = ...,
    at: Any = ...,
    max_attempts: int | None = ...,
    job_id: str | None = ...,
    unique_key: str | None = ...,
    limit_keys: list[str] | tuple[str, ...] | None = ...,
    depends_on: Iterable[str] | None = ...,
    if_dependency_fails: str = ...,
    debounce: Any = ...,
    throttle: tuple[int, Any],
    key: str | None = ...,
    when_throttled: str = ...,
) -> Throttled: ...


async def enqueue(
    db_or_tr: Database | AsyncTransaction,
    queue_id: str,
    topic: str,
    payload: Any,
    *,
    priority: int = DEFAULT_PRIORITY,
    delay: Any = None,
    at: Any = None,
    max_attempts: int | None = None,
    job_id: str | None = None,
    unique_key: str | None = None,
    limit_keys: list[str] | tuple[str, ...] | None = None,
    depends_on: Iterable[str] | None = None,
    if_dependency_fails: str = "discard",
    debounce: Any = None,
    throttle: tuple[int, Any] | None = None,
    key: str | None = None,
    when_throttled: str = "delay",
) -> str | Throttled:
    """:func:`quick.enqueue`, awaited; see it for the arguments and errors (a
    :class:`~quick.flow.Throttled` comes back when ``throttle`` is given). ``depends_on``
    is read on the caller's loop first, so a generator is not consumed in a thread."""
    if isinstance(depends_on, Iterable) and not isinstance(depends_on, str | bytes):
        depends_on = list(depends_on)
    return await run_joined(
        db_or_tr,
        quick.enqueue,
        queue_id,
        topic,
        payload,
        priority=priority,
        delay=delay,
        at=at,
        max_attempts=max_attempts,
        job_id=job_id,
        unique_key=unique_key,
        limit_keys=limit_keys,
        depends_on=depends_on,
        if_dependency_fails=if_dependency_fails,
        debounce=debounce,
        throttle=throttle,
        key=key,
        when_throttled=when_throttled,
    )


async def enqueue_many(db_or_tr: Database | AsyncTransaction, jobs: Iterable[JobSpec]) -> list[str]:
    """:func:`quick.enqueue_many`, awaited (``jobs`` is read on the caller's loop first)."""
    if isinstance(jobs, str | bytes | dict) or not isinstance(jobs, Iterable):
        raise InvalidArgument(
            "jobs", f"must be an iterable of job mappings, not {type(jobs).__name__}"
        )
    return await run_joined(db_or_tr, quick.enqueue_many, list(jobs))


async def job_state(db_or_tr: Database | AsyncTransaction, job_id: str) -> JobState | None:
    """:func:`quick.job_state`, awaited."""
    check_name("job_id", job_id)
    return await run_joined(db_or_tr, quick.job_state, job_id)


async def cancel(db_or_tr: Database | AsyncTransaction, job_id: str) -> bool:
    """:func:`quick.cancel`, awaited."""
    check_name("job_id", job_id)
    return await run_joined(db_or_tr, quick.cancel, job_id)


async def result(db: Database, job_id: str, timeout: float | None = None) -> Any:
    """:func:`quick.result`, awaited: the same value and errors.

    Each look at the job runs in the bounded pool; waiting for it to finish is a
    watch on its directory entry, awaited in a thread of its own
    (:func:`quick.aio_waiting.await_watch`), so neither the loop nor the pool is held.

    Cancellation: a cancelled caller cancels its watch and is released at once.
    """
    check_name("job_id", job_id)
    wait = check_timeout(timeout)
    check_database(db, "db")
    deadline = None if wait is None else time.monotonic() + wait
    failures = 0
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        watching = remaining is None or remaining > 0
        found, watch = await blocking(db.transact, look_or_watch, job_id, watching)
        if watch is None:
            if found is PENDING:
                raise ResultTimeout(job_id, wait or 0.0)
            return found
        try:
            await await_watch(watch, remaining)
        finally:
            watch.cancel()
        failures = failures + 1 if watch.failed else 0
        pause = watch_retry_pause(failures, random.random(), remaining)
        if pause:
            await sleep(pause)
