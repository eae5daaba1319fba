"""OpenTelemetry for quick (the ``quick[otel]`` extra): producer context, handler spans.

Imported only by a process that has imported ``opentelemetry`` itself
(:mod:`quick.tracecontext` decides); quick never configures a tracer provider, so
spans go wherever the application's provider sends them.

* Enqueue: the active span's W3C context (``traceparent``, ``tracestate``) is recorded
  on the job, whatever global propagator the application set, so any worker can read it.
* Worker: each attempt's handler runs in a ``CONSUMER`` span named ``"<topic> process"``
  that is a **child** of the enqueuing span, so producer and handler are one trace (one
  job has exactly one producer span, so a parent says more than a link). Its attributes:
  ``quick.queue``, ``quick.topic``, ``quick.job_id``, ``quick.attempt`` and
  ``quick.outcome``: how the attempt ended as the handler left it (``completed``,
  ``failed``, ``snoozed``, ``discarded``, ``lease_lost`` or ``cancelled``); whether a
  failure is retried or dead-lettered is the settlement's business, recorded after
  the span. A failure also sets the span's status to ERROR and records the exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from quick.errors import Discard, LeaseLost, Snooze

__all__ = ["inject_current", "call_in_span", "await_in_span", "TRACER_NAME"]

#: The instrumentation scope of quick's spans.
TRACER_NAME = "quick"

_W3C = TraceContextTextMapPropagator()


def inject_current() -> dict[str, str] | None:
    """The active span's W3C context (``traceparent``, ``tracestate`` if any), or None
    when no valid span is active."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier or None


def _outcome(error: BaseException) -> str:
    if isinstance(error, Snooze):
        return "snoozed"
    if isinstance(error, Discard):
        return "discarded"
    if isinstance(error, LeaseLost):
        return "lease_lost"
    if isinstance(error, Exception):
        return "failed"
    return "cancelled"  # trio.Cancelled, KeyboardInterrupt, SystemExit


@contextmanager
def _attempt_span(meta: Any) -> Iterator[Span]:
    carrier = getattr(meta, "trace", None)
    parent = _W3C.extract(carrier) if carrier else None
    tracer = trace.get_tracer(TRACER_NAME)
    attributes = {
        "messaging.system": "quick",
        "messaging.operation.type": "process",
        "quick.queue": meta.queue_id,
        "quick.topic": meta.topic,
        "quick.job_id": meta.job_id,
        "quick.attempt": meta.attempt,
    }
    with tracer.start_as_current_span(
        f"{meta.topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            outcome = _outcome(error)
            span.set_attribute("quick.outcome", outcome)
            if outcome == "failed":
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
        span.set_attribute("quick.outcome", "completed")


def call_in_span(handler: Callable[..., Any], meta: Any, *args: Any) -> Any:
    """``handler(*args)`` in the attempt's span (``meta`` names the job)."""
    with _attempt_span(meta):
        return handler(*args)


async def await_in_span(handler: Callable[..., Awaitable[Any]], meta: Any, *args: Any) -> Any:
    """``await handler(*args)`` in the attempt's span."""
    with _attempt_span(meta):
        return await handler(*args)
