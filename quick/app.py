"""Routing topics to handlers: ``app = quick.App()`` and ``@app.job("email:send", ...)``.

A handler takes ``(payload, meta)``, or ``(tr, payload, meta)`` to have its writes
committed in the same transaction as the job's completion (exactly-once effects for
data in the store). ``meta`` carries topic, queue_id, job_id, attempt (1-based) and
the lease deadline.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyspace.protocol import Database, Transaction
from quick.enqueue_options import enqueue
from quick.errors import InvalidArgument
from quick.jobs import DEFAULT_PRIORITY
from quick.retrying import Backoff
from quick.validation import check_max_attempts, check_name, check_priority

__all__ = ["App", "JobConfig", "Meta", "Backoff"]


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

    @property
    def runs_in_trio(self) -> bool:
        """Whether its attempts run under trio (:mod:`quick.trio_handlers`): an ``async
        def`` handler, or one with a timeout; others run in a consumer's thread lanes."""
        return self.is_async or self.timeout is not None


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

    def job(
        self,
        topic: str,
        *,
        priority: int = DEFAULT_PRIORITY,
        max_attempts: int | None = None,
        timeout: float | None = None,
        backoff: Backoff | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the decorated function as the handler of ``topic``.

        Args:
            topic: the topic it handles.
            priority: the default priority of jobs enqueued through this app.
            max_attempts: attempts before dead-lettering (default 5).
            timeout: seconds an attempt may run before it counts as failed.
            backoff: ``(base_seconds, max_seconds)`` or ``attempt -> seconds``.
        """
        check_name("topic", topic)
        check_priority(priority)
        check_max_attempts(max_attempts)
        if timeout is not None and not timeout > 0:
            raise InvalidArgument("timeout", f"must be positive seconds, not {timeout!r}")
        if isinstance(backoff, tuple) and (len(backoff) != 2 or min(backoff) <= 0):
            raise InvalidArgument("backoff", "must be (base_seconds, max_seconds), both positive")

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            if topic in self._jobs:
                raise InvalidArgument("topic", f"{topic!r} already has a handler")
            self._jobs[topic] = JobConfig(
                topic=topic,
                handler=handler,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                backoff=backoff,
                transactional=_takes_transaction(handler),
                is_async=inspect.iscoroutinefunction(handler),
            )
            return handler

        return register

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
        """``quick.enqueue`` with this app's defaults; refuses topics it has no handler for.

        Returns the job id, or a :class:`quick.flow.Throttled` when ``throttle`` is given.
        """
        config = self._jobs.get(topic)
        if config is None:
            raise InvalidArgument("topic", f"no handler is registered for {topic!r}")
        options.setdefault("priority", config.priority)
        options.setdefault("max_attempts", config.max_attempts)
        return enqueue(db_or_tr, queue_id, topic, payload, **options)
