"""Where blocking store calls meet an async caller's loop, on asyncio and on trio.

Two ways of waiting, and nothing else in :mod:`quick.aio` waits on the store:

* :func:`run_blocking` runs a blocking call (an embedded-engine read or commit, a
  whole synchronous queue function) in a worker thread, at most :data:`POOL_SIZE`
  per event loop, so the loop never blocks and a burst of callers queues for a thread
  instead of starting thousands.
* :func:`await_future` waits for a FoundationDB binding future through its completion
  callback (``Future.on_ready``), which hands the result to the loop with
  ``loop.call_soon_threadsafe`` (asyncio) or ``TrioToken.run_sync_soon`` (trio): no
  thread is held while the cluster answers.

Both run unchanged under asyncio and trio through anyio.

Cancellation: a call already running in a thread cannot be interrupted. A cancelled
caller is released at once (``Cancelled`` / ``CancelledError`` raised) and the thread
finishes the call on its own, its result discarded: a transaction is then committed
or not, never half-applied, as :mod:`consumer.bridge` does for the consumer. A
cancelled wait on a binding future cancels that future.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ["POOL_SIZE", "await_future", "run_blocking"]

T = TypeVar("T")

#: Worker threads per event loop for blocking store calls. Commits on the embedded
#: engine serialise on its writer lock and Python holds the GIL, so more threads add
#: switching, not throughput; 8 keeps a few reads overlapping one commit.
POOL_SIZE = 8

_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar("quick_aio_pool")


def pool_limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter on worker threads (made on first use)."""
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(POOL_SIZE)
        _limiter.set(limiter)
        return limiter


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the bounded pool; see the module docstring on cancellation."""
    call = functools.partial(fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=pool_limiter())


def _call_soon_threadsafe() -> Callable[[Callable[[], None]], None]:
    """A function any thread may call to run a callback on the current event loop soon."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio  # only under trio, which is then imported already

        token = trio.lowlevel.current_trio_token()
        return token.run_sync_soon

    def schedule(callback: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(callback)

    return schedule


async def await_future(future: Any) -> None:
    """Wait until a binding future (``on_ready``, ``is_ready``, ``cancel``) is ready.

    The caller then reads the future's value, which no longer blocks. ``on_ready``
    runs its callback on the binding's network thread (or at once when the future is
    ready already); the callback only schedules an event's ``set`` on this loop.
    """
    if future.is_ready():
        await anyio.lowlevel.checkpoint()
        return
    ready = anyio.Event()
    schedule = _call_soon_threadsafe()
    future.on_ready(lambda _: schedule(ready.set))
    try:
        await ready.wait()
    except BaseException:
        future.cancel()
        raise
