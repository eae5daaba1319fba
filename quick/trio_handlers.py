"""Running a handler under trio: the handler timeout, and sync handlers in a thread.

The consumer's async runners (:mod:`consumer.runners`) and :func:`quick.testing.drain`
run the handlers that :attr:`quick.app.JobConfig.runs_in_trio` sends here the same
way. Importing this module imports trio; ``quick`` itself never imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from quick.app import JobConfig, Meta
from quick.tracecontext import ainvoke, invoke

__all__ = ["within_timeout", "call_handler"]

T = TypeVar("T")


async def within_timeout(config: JobConfig, call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` within the handler's ``timeout`` (if it has one).

    Raises:
        TimeoutError: the timeout ran out (the handler's failure, recorded and retried
            as any other); the call was cancelled, or abandoned in its thread.
    """
    if not config.timeout:
        return await call()
    try:
        with trio.fail_after(config.timeout):
            return await call()
    except trio.TooSlowError:
        raise TimeoutError(f"timed out after {config.timeout} s") from None


async def call_handler(config: JobConfig, payload: Any, meta: Meta) -> Any:
    """A plain handler's call: awaited when ``async def``, else run in a thread, which
    is abandoned (left to finish on its own) when the call is cancelled."""
    if config.is_async:
        return await ainvoke(config.handler, meta, payload, meta)
    return await trio.to_thread.run_sync(
        invoke, config.handler, meta, payload, meta, abandon_on_cancel=True
    )
