"""Where blocking store calls meet an async caller's loop, on asyncio and on trio.

Three ways of waiting, and nothing else in :mod:`quick.aio` waits on the store:

* :func:`run_blocking` runs a blocking call (an embedded-engine read or commit, a
  whole synchronous queue function) in the bounded pool of :mod:`quick.aio_pool`, so
  the loop never blocks and a burst of callers queues for a few threads instead of
  starting thousands.
* :func:`await_future` waits for a FoundationDB binding future through its completion
  callback (``Future.on_ready``), which hands it to the loop with
  ``loop.call_soon_threadsafe`` (asyncio) or ``TrioToken.run_sync_soon`` (trio): no
  thread is held while the cluster answers.
* :func:`await_watch` waits for a watch (:func:`quick.aio.result`): a wait can last
  minutes, so it holds its own thread, blocked on the watch (the engine's condition
  variable, or the binding future's event), never one of the pool's, which would
  starve the calls queued behind it. Cancelling the caller cancels the watch, which
  releases the thread at once.

The running loop is found when a call is made (asyncio's running loop, else trio's),
and each waits with that loop's own primitives: an asyncio future, a parked trio task.
They cost half of what anyio's portable ``Event`` does per call (measured with
``scripts/bench_aio.py``'s workload), and code on anyio runs on one of the two loops.

Cancellation: a call already running in a thread cannot be interrupted. A cancelled
caller is released at once (``CancelledError`` / ``trio.Cancelled`` raised); a call not
yet started is then skipped, and one already running finishes on its own, its result
discarded: a transaction is committed or not, never half-applied, as
:mod:`consumer.bridge` does for the consumer. A cancelled wait on a binding future
cancels that future.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from keyspace.protocol import Watch
from quick.aio_pool import Call, Schedule, submit

__all__ = ["await_future", "await_watch", "run_blocking", "sleep"]

T = TypeVar("T")


def _one_shot() -> tuple[Schedule, Callable[[], None], Callable[[], Awaitable[Any]]]:
    """For the running loop: (a thread-safe scheduler, a wake-up to call on the loop,
    what to await until it is called)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _trio_one_shot()
    future = loop.create_future()

    def wake() -> None:
        if not future.done():  # a cancelled caller cancelled it
            future.set_result(None)

    return cast(Schedule, loop.call_soon_threadsafe), wake, lambda: future


def _trio_one_shot() -> tuple[Schedule, Callable[[], None], Callable[[], Awaitable[Any]]]:
    """:func:`_one_shot` on trio: the task parks itself and is rescheduled by the wake-up
    (cheaper than a ``trio.Event`` per call); a cancelled task stops waiting at once."""
    from trio import lowlevel  # not under asyncio: trio's own loop (imported already, then)

    task = lowlevel.current_task()
    waiting = [False]

    def wake() -> None:
        if waiting[0]:
            waiting[0] = False
            lowlevel.reschedule(task)

    def abort(_: Any) -> lowlevel.Abort:
        waiting[0] = False
        return lowlevel.Abort.SUCCEEDED

    async def wait() -> None:
        waiting[0] = True
        await lowlevel.wait_task_rescheduled(abort)

    return cast(Schedule, lowlevel.current_trio_token().run_sync_soon), wake, wait


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the bounded pool; see the module docstring on cancellation."""
    schedule, wake, done = _one_shot()
    call = Call(functools.partial(fn, *args, **kwargs), schedule, wake)
    submit(call)
    try:
        await done()
    except BaseException:
        call.cancelled = True
        raise
    if call.error is not None:
        raise call.error
    return call.result  # type: ignore[no-any-return]


async def await_future(future: Any) -> None:
    """Wait until a binding future (``on_ready``, ``is_ready``, ``cancel``) is ready.

    The caller then reads the future's value, which no longer blocks. ``on_ready``
    runs its callback on the binding's network thread (or at once, on this thread,
    when the future is ready already); the callback only schedules the wake-up.
    """
    schedule, wake, done = _one_shot()

    def ready(_: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits
            schedule(wake)

    future.on_ready(ready)
    try:
        await done()
    except BaseException:
        future.cancel()
        raise


async def await_watch(watch: Watch, timeout: float | None) -> bool:
    """``watch.wait(timeout)`` without blocking the loop: True when it fired (or failed:
    see ``watch.failed``), False when ``timeout`` passed. A cancelled caller cancels
    the watch (its thread returns at once) and is released at once."""
    schedule, wake, done = _one_shot()
    fired = [False]

    def wait() -> None:
        try:
            fired[0] = watch.wait(timeout)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits
                schedule(wake)

    threading.Thread(target=wait, name="quick-result-wait", daemon=True).start()
    try:
        await done()
    except BaseException:
        watch.cancel()
        raise
    return fired[0]


async def sleep(seconds: float) -> None:
    """Sleep on whichever loop is running (a timer thread wakes it; a cancelled caller
    cancels the timer)."""
    schedule, wake, done = _one_shot()

    def ring() -> None:
        with contextlib.suppress(RuntimeError):
            schedule(wake)

    timer = threading.Timer(seconds, ring)
    timer.daemon = True
    timer.start()
    try:
        await done()
    finally:
        timer.cancel()
