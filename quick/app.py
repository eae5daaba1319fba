"""Routing topics to handlers: ``app = quick.App()`` and ``@app.job("email:send", ...)``.

A handler takes ``(payload, meta)``, or ``(tr, payload, meta)`` to have its writes
committed in the same transaction as the job's completion (exactly-once effects for
data in the store); a handler with keyword-only parameters takes its job's arguments
(``def send(*, to: str)``) and is enqueued through itself (:mod:`quick.typed`).
``meta`` carries topic, queue_id, job_id, attempt (1-based), the lease deadline and
the trace context the job was enqueued in, tells whether the job was cancelled while
it runs (:meth:`Meta.cancelled`) and records its progress (:meth:`Meta.progress`).

The loop rule: an ``async def`` handler runs on asyncio unless it is registered with
``loop="trio"``; a plain ``def`` handler runs in a thread and takes no ``loop``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast, overload

from keyspace.protocol import Database, Transaction
from quick.enqueue_options import enqueue
from quick.errors import InvalidArgument
from quick.jobs import DEFAULT_PRIORITY
from quick.key_limits import check_limit_keys
from quick.progress import JobSignals
from quick.retrying import Backoff
from quick.tracecontext import TraceContext
from quick.typed import JobHandler, Shape, adapt, check_stored_arguments, shape_of
from quick.validation import check_max_attempts, check_name, check_priority

__all__ = ["App", "JobConfig", "Meta", "Backoff", "Register", "LOOPS"]

#: The event loops an ``async def`` handler may run on; the first is the default.
LOOPS = ("asyncio", "trio")

A = ParamSpec("A")
R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """What a handler knows about the job it runs."""

    topic: str
    queue_id: str
    job_id: str
    attempt: int
    lease_deadline_ms: int
    owner: str = ""
    #: What a job extension adds; for a workflow step, a ``workflow.StepContext``.
    context: Any = None
    #: The W3C trace context the job was enqueued in (``traceparent``, ``tracestate``).
    trace: TraceContext | None = None
    #: What the worker and the handler tell each other while it runs (cancel, progress).
    signals: JobSignals = field(default_factory=JobSignals, repr=False, compare=False)

    def cancelled(self) -> bool:
        """Whether ``quick.cancel`` asked this job to stop; a sync handler checks it
        and returns early (what it returns then is discarded: the job ends cancelled).

        The worker's lease keeper brings the news as soon as it is told (it watches
        for cancels). An async handler is cancelled instead.
        """
        return self.signals.cancelled

    def progress(self, fraction: float, text: str = "") -> None:
        """Record how far the job has come: ``fraction`` from 0 to 1, and a short ``text``.

        Cheap and non-blocking: the worker's lease keeper writes the latest value with
        its next renewal (within a third of the lease), in the job's record, where
        ``quick.get_job`` and the dashboard read it; calls in between overwrite it.

        Raises:
            InvalidArgument: ``fraction`` is not a finite number in 0..1, or ``text``
                is not a string of at most ``quick.progress.MAX_PROGRESS_TEXT`` bytes.
        """
        self.signals.record(fraction, text)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobConfig:
    """A registered handler and its policy."""

    topic: str
    handler: Callable[..., Any]
    priority: int = DEFAULT_PRIORITY
    max_attempts: int | None = None
    timeout: float | None = None
    backoff: Backoff | None = None
    transactional: bool = False
    is_async: bool = False
    #: Keyed limits every job of the topic enqueued through the app counts against.
    limit_keys: tuple[str, ...] = ()
    #: The event loop of an ``async def`` handler (one of :data:`LOOPS`); None for a
    #: plain ``def`` one.
    loop: str | None = None

    @property
    def runs_in_trio(self) -> bool:
        """Whether its attempts are driven from trio (:mod:`quick.trio_handlers`): an
        ``async def`` handler (an asyncio one through the consumer's asyncio loop), or
        one with a timeout; others run in a consumer's thread lanes."""
        return self.is_async or self.timeout is not None

    @property
    def on_asyncio(self) -> bool:
        """Whether it is an ``async def`` handler that runs on asyncio."""
        return self.is_async and self.loop == "asyncio"


Legacy = TypeVar("Legacy", bound=Callable[[Any, Meta], Any])
LegacyInTransaction = TypeVar("LegacyInTransaction", bound=Callable[[Transaction, Any, Meta], Any])


class Register(Protocol):
    """What ``@app.job(topic, ...)`` applies to a handler: a ``(payload, meta)`` or
    ``(tr, payload, meta)`` handler comes back unchanged; one with keyword-only
    parameters (after ``meta`` or ``tr, meta``, if it takes them) as a typed
    :class:`~quick.typed.JobHandler` (``A``: its keyword parameters)."""

    @overload
    def __call__(self, handler: LegacyInTransaction, /) -> LegacyInTransaction: ...
    @overload
    def __call__(self, handler: Legacy, /) -> Legacy: ...
    @overload
    def __call__(
        self, handler: Callable[Concatenate[Transaction, Meta, A], R], /
    ) -> JobHandler[Concatenate[Transaction, Meta, A], A, R]: ...
    @overload
    def __call__(
        self, handler: Callable[Concatenate[Meta, A], R], /
    ) -> JobHandler[Concatenate[Meta, A], A, R]: ...
    @overload
    def __call__(self, handler: Callable[A, R], /) -> JobHandler[A, A, R]: ...


def _takes_transaction(handler: Callable[..., Any]) -> bool:
    params = [
        p
        for p in inspect.signature(handler).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(params) >= 3


class App:
    """A registry of job handlers by topic."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobConfig] = {}
        #: Typed handlers' signatures, by topic: enqueueing by topic checks them too.
        self._shapes: dict[str, Shape] = {}

    def job(
        self,
        topic: str,
        *,
        priority: int = DEFAULT_PRIORITY,
        max_attempts: int | None = None,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        limit_keys: list[str] | tuple[str, ...] | None = None,
        loop: str | None = None,
    ) -> Register:
        """Register the decorated function as the handler of ``topic``.

        A handler with keyword-only parameters comes back as a :class:`quick.JobHandler`
        (``send.enqueue(db, queue_id, to=...)``, typed by its parameters); any other
        comes back unchanged (see :mod:`quick.typed` for the rule).

        Args:
            topic: the topic it handles.
            priority: the default priority of jobs enqueued through this app.
            max_attempts: attempts before dead-lettering (default 5).
            timeout: seconds an attempt may run before it counts as failed.
            backoff: ``(base_seconds, max_seconds)`` or ``attempt -> seconds``.
            limit_keys: keyed limits (:func:`quick.set_key_limits`) every job of the topic
                enqueued through this app counts against, beside those given at enqueue.
            loop: for an ``async def`` handler, ``"asyncio"`` (the default) or
                ``"trio"``, the event loop it runs on.

        Raises:
            InvalidArgument: a bad option (``loop`` not one of :data:`LOOPS`, or given
                for a plain ``def`` handler), or ``topic`` already has a handler.
        """
        check_name("topic", topic)
        check_priority(priority)
        check_max_attempts(max_attempts)
        if timeout is not None and not timeout > 0:
            raise InvalidArgument("timeout", f"must be positive seconds, not {timeout!r}")
        if isinstance(backoff, tuple) and (len(backoff) != 2 or min(backoff) <= 0):
            raise InvalidArgument("backoff", "must be (base_seconds, max_seconds), both positive")
        topic_keys = check_limit_keys(limit_keys)
        if loop is not None and loop not in LOOPS:
            raise InvalidArgument("loop", f"must be one of {', '.join(LOOPS)}, not {loop!r}")

        def register(handler: Callable[..., Any]) -> Any:
            if topic in self._jobs:
                raise InvalidArgument("topic", f"{topic!r} already has a handler")
            is_async = inspect.iscoroutinefunction(handler)
            if loop is not None and not is_async:
                raise InvalidArgument(
                    "loop", f"applies to async def handlers; {topic!r} has a plain def one"
                )
            shape = shape_of(topic, handler)
            self._jobs[topic] = JobConfig(
                topic=topic,
                handler=handler if shape is None else adapt(topic, handler, shape),
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                backoff=backoff,
                transactional=_takes_transaction(handler) if shape is None else shape.transactional,
                is_async=is_async,
                loop=(loop or LOOPS[0]) if is_async else None,
                limit_keys=topic_keys,
            )
            if shape is None:
                return handler
            self._shapes[topic] = shape
            return JobHandler(self, topic, handler, shape)

        return cast(Register, register)

    def config(self, topic: str) -> JobConfig | None:
        """The handler registered for ``topic``, if any."""
        return self._jobs.get(topic)

    @property
    def topics(self) -> list[str]:
        return sorted(self._jobs)

    def enqueue(
        self,
        db_or_tr: Database | Transaction,
        queue_id: str,
        topic: str,
        payload: Any,
        **options: Any,
    ) -> Any:
        """``quick.enqueue`` with this app's defaults (the topic's limit keys joined to any
        given); refuses topics it has no handler for, and a payload that does not fit a
        typed handler's arguments.

        Returns the job id, or a :class:`quick.flow.Throttled` when ``throttle`` is given.
        """
        config = self._jobs.get(topic)
        if config is None:
            raise InvalidArgument("topic", f"no handler is registered for {topic!r}")
        shape = self._shapes.get(topic)
        if shape is not None:
            check_stored_arguments(topic, shape, payload)
        options.setdefault("priority", config.priority)
        options.setdefault("max_attempts", config.max_attempts)
        if config.limit_keys:
            given = check_limit_keys(options.get("limit_keys"))
            options["limit_keys"] = list(dict.fromkeys(config.limit_keys + given))
        return enqueue(db_or_tr, queue_id, topic, payload, **options)
