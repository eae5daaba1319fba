"""The trace context a job carries: W3C ``traceparent``/``tracestate``, checked both ways.

An enqueue made inside an active OpenTelemetry span records that span's context on the
job (field ``tc`` of the job record, omitted when there is none), and the worker runs
the handler in a child span of it (:mod:`quick.tracing`). This module needs no
OpenTelemetry: it asks for the current context only when the process has imported
``opentelemetry`` already (an application with no tracer imports nothing and pays one
dictionary lookup per enqueue), and it checks a stored context before anyone uses it,
since nothing read from the store is trusted. Every handler call goes through
:func:`invoke` / :func:`ainvoke`, which add the attempt's span on the same condition.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

__all__ = ["TraceContext", "check_trace", "current_trace", "invoke", "ainvoke", "MAX_TRACESTATE"]

T = TypeVar("T")

#: A job's trace context: ``{"traceparent": ..., "tracestate": ...}`` (tracestate optional).
TraceContext = dict[str, str]

#: The W3C limit on a tracestate header (32 members of at most 256 bytes each would be
#: more, but the recommendation is that vendors keep it within 512 characters).
MAX_TRACESTATE = 512

_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(r"[\x20-\x7e]*")


def check_trace(value: Any) -> TraceContext | None:
    """``value`` as a trace context, or None for none.

    Raises:
        ValueError: ``value`` is not a map of a valid ``traceparent`` and an optional
            printable ``tracestate`` of at most :data:`MAX_TRACESTATE` characters.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= {"traceparent", "tracestate"}:
        raise ValueError(f"trace context of the wrong shape: {value!r}")
    parent = value.get("traceparent")
    if not isinstance(parent, str) or not _TRACEPARENT.fullmatch(parent):
        raise ValueError(f"trace context with a malformed traceparent: {parent!r}")
    state = value.get("tracestate", "")
    if (
        not isinstance(state, str)
        or len(state) > MAX_TRACESTATE
        or not _TRACESTATE.fullmatch(state)
    ):
        raise ValueError(f"trace context with a malformed tracestate: {state!r}")
    return dict(value)


def current_trace() -> TraceContext | None:
    """The active span's context, when the process uses OpenTelemetry and a span is active.

    Free without OpenTelemetry: nothing is imported unless ``opentelemetry`` already is.
    """
    if "opentelemetry" not in sys.modules:
        return None
    from quick.tracing import inject_current

    return check_trace(inject_current())


def invoke(handler: Callable[..., T], meta: Any, *args: Any) -> T:
    """``handler(*args)``: every handler call of quick goes through here, so that a process
    that uses OpenTelemetry runs it in the attempt's span (:mod:`quick.tracing`)."""
    if "opentelemetry" not in sys.modules:
        return handler(*args)
    from quick.tracing import call_in_span

    return cast(T, call_in_span(handler, meta, *args))


async def ainvoke(handler: Callable[..., Awaitable[T]], meta: Any, *args: Any) -> T:
    """``await handler(*args)``, in the attempt's span as :func:`invoke` says."""
    if "opentelemetry" not in sys.modules:
        return await handler(*args)
    from quick.tracing import await_in_span

    return cast(T, await await_in_span(handler, meta, *args))
