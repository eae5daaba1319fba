"""``quick.enqueue``: the plain enqueue (:mod:`quick.enqueueing`) plus the options that
relate a job to others: ``depends_on`` (:mod:`quick.dependencies`), ``debounce`` and
``throttle`` (:mod:`quick.flow`).

A call with none of them goes straight to :func:`quick.enqueueing.enqueue` and pays
nothing for them. This module sits above those three, so the core enqueue never
imports the features built on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, overload

from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries
from quick import dependencies, flow
from quick.enqueueing import _Prepared, _store_one, prepare
from quick.errors import InvalidArgument
from quick.flow import Throttled
from quick.jobs import DEFAULT_PRIORITY

__all__ = ["enqueue"]


@overload
def enqueue(
    db_or_tr: Database | Transaction,
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
def enqueue(
    db_or_tr: Database | Transaction,
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


def enqueue(
    db_or_tr: Database | Transaction,
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
    """Put one job on ``queue_id``; return its id (a :class:`~quick.flow.Throttled`
    when ``throttle`` is given, since a throttled job may be dropped).

    The arguments up to ``limit_keys`` are :func:`quick.enqueueing.enqueue`'s; then:

    Args:
        depends_on: job ids (on any queue) that must all complete before this job
            runs; it waits off its queue until the last one's settlement releases it.
        if_dependency_fails: ``"discard"`` (a dependency dead-lettered, discarded or
            cancelled discards this job, with a reason naming it) or ``"run"``.
        debounce: seconds (or a timedelta): of the jobs enqueued with this ``key`` on
            this queue within the window, only the last payload runs, once, when the
            window ends; returns the id of the job that will run.
        throttle: ``(n, seconds)``: at most ``n`` jobs per ``key`` start per window.
        key: what ``debounce`` or ``throttle`` counts (required with either).
        when_throttled: ``"delay"`` (to the next window with room) or ``"drop"``.

    Raises:
        InvalidArgument: a bad queue id, topic, priority, delay, at, max_attempts, limit
            keys, size,
            dependency (unknown, itself, repeated), window or key, or options that do
            not combine (at most one of depends_on, debounce and throttle; none of them
            with unique_key; debounce not with delay, at or job_id).
        InvalidPayload: a payload msgpack cannot encode.
        QueueMoved: ``quick migrate`` moved the queue to another store.
    """
    prepared = prepare(
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
    )
    if depends_on is None and debounce is None and throttle is None and key is None:
        return _store_one(db_or_tr, prepared, Tries())
    named = (("depends_on", depends_on), ("debounce", debounce), ("throttle", throttle))
    given = [name for name, value in named if value is not None]
    if len(given) > 1:
        raise InvalidArgument(given[1], f"cannot be combined with {given[0]}")
    if not given:
        raise InvalidArgument("key", "is for debounce or throttle; give one of them")
    if prepared.job.unique_key is not None:
        raise InvalidArgument("unique_key", f"cannot be combined with {given[0]}")
    if depends_on is not None:
        ids = dependencies.check_dependencies(depends_on, prepared.job.id, if_dependency_fails)
        return dependencies.enqueue_after(db_or_tr, prepared, ids, if_dependency_fails)
    return _flow(db_or_tr, prepared, debounce, throttle, flow.check_key(key), when_throttled)


def _flow(
    db_or_tr: Database | Transaction,
    prepared: _Prepared,
    debounce: Any,
    throttle: Any,
    key: str,
    when_throttled: Any,
) -> str | Throttled:
    if debounce is not None:
        window = flow.window_ms("debounce", debounce)
        if prepared.job.vis_ms != prepared.job.created_ms or not prepared.fresh_id:
            raise InvalidArgument("debounce", "cannot be combined with delay, at or job_id")
        return flow.debounced(db_or_tr, prepared, key, window)
    runs, window = flow.check_throttle(throttle, when_throttled)
    return flow.throttled(db_or_tr, prepared, key, runs, window, when_throttled)
