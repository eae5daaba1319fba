"""Where blocking store calls meet an async caller's loop, on asyncio and on trio.

Three ways of waiting, and nothing else in :mod:`quick.aio` waits on the store:

* :func:`blocking` runs a blocking call (an embedded-engine read or commit, a whole
  synchronous queue function) in the bounded pool of :mod:`quick.aio_pool`, so the
  loop never blocks and a burst of callers queues for a few threads instead of
  starting thousands; :func:`run_blocking` is the same as a coroutine. On asyncio the
  caller awaits the call's own future, with no coroutine of ours in between: a burst
  of 10,000 waiting callers is that many fewer objects for each full garbage
  collection to walk.
* :func:`await_future` waits for a FoundationDB binding future through its completion
  callback (``Future.on_ready``), which hands it to the loop with
  ``loop.call_soon_threadsafe`` (asyncio) or ``TrioToken.run_sync_soon`` (trio): no
  thread is held while the cluster answers.
* :func:`await_watch` waits for a watch (:func:`quick.aio.result`). A FoundationDB
  watch calls back when it fires, so the loop waits on that callback with no thread
  held. The embedded engine's blocks on a condition variable: a wait can last minutes,
  so it holds its own thread, never one of the pool's, which would starve the calls
  queued behind it. Cancelling the caller cancels the watch, which releases its
  thread at once.

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
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from keyspace.protocol import Watch
from quick.aio_pool import Call, submit

__all__ = ["await_future", "await_watch", "blocking", "run_blocking", "sleep"]

T = TypeVar("T")


class _AsyncioCall(Call):
    """A call whose asyncio caller awaits :attr:`future` itself (no coroutine of ours in
    between); cancelling the caller cancels the future, which :attr:`cancelled` reads."""

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Any, args: Any, kwargs: Any) -> None:
        super().__init__(loop, fn, args, kwargs)
        self.future: asyncio.Future[Any] = loop.create_future()

    @property
    def cancelled(self) -> bool:
        return self.future.cancelled()

    def finish(self) -> None:
        future = self.future
        if future.done():  # its caller was cancelled
            return
        error = self.error
        if error is None:
            future.set_result(self.result)
        elif isinstance(error, StopIteration):  # a future cannot carry one
            future.set_exception(RuntimeError(f"the call raised {error!r}"))
        else:
            future.set_exception(error)
        self.error = self.result = None


class _TrioCall(Call):
    """A call whose trio caller parks its task until :meth:`finish` reschedules it
    (cheaper than a ``trio.Event`` per call); a cancelled task stops waiting at once."""

    __slots__ = ("task", "waiting")

    def __init__(self, token: Any, task: Any, fn: Any, args: Any, kwargs: Any) -> None:
        super().__init__(token, fn, args, kwargs)
        self.task = task
        self.waiting = True

    @property
    def cancelled(self) -> bool:
        return not self.waiting

    def finish(self) -> None:
        if self.waiting:
            self.waiting = False
            from trio import lowlevel

            lowlevel.reschedule(self.task)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        from trio import lowlevel

        def abort(_: Any) -> lowlevel.Abort:
            self.waiting = False
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)
        if self.error is not None:
            raise self.error
        return self.result


def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Awaitable[T]:
    """``fn(*args, **kwargs)`` queued for the bounded pool now; await what this returns
    for its result. The hot path of :mod:`quick.aio`: no coroutine of its own."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        from trio import lowlevel  # not under asyncio: trio's own loop (imported already)

        trio_call = _TrioCall(
            lowlevel.current_trio_token(), lowlevel.current_task(), fn, args, kwargs
        )
        submit(trio_call)
        return trio_call
    call = _AsyncioCall(loop, fn, args, kwargs)
    submit(call)
    return call.future


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the bounded pool; see the module docstring on cancellation."""
    return await blocking(fn, *args, **kwargs)


def _one_shot() -> tuple[Callable[[Callable[[], None]], Any], Callable[[], None], Any]:
    """For the running loop: (a thread-safe scheduler, a wake-up to call on the loop,
    an awaitable done once it is called). For waits that are not hot enough to need a
    :class:`Call` of their own (binding futures, watches)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        from trio import lowlevel

        trio_call = _TrioCall(lowlevel.current_trio_token(), lowlevel.current_task(), None, (), {})
        return trio_call.loop.run_sync_soon, trio_call.finish, trio_call
    future = loop.create_future()

    def wake() -> None:
        if not future.done():  # a cancelled caller cancelled it
            future.set_result(None)

    schedule: Callable[[Callable[[], None]], Any] = loop.call_soon_threadsafe
    return schedule, wake, future


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
        await done
    except BaseException:
        future.cancel()
        raise


async def await_watch(watch: Watch, timeout: float | None) -> bool:
    """``watch.wait(timeout)`` without blocking the loop: True when it fired (or failed:
    see ``watch.failed``), False when ``timeout`` passed. A cancelled caller cancels
    the watch (its thread returns at once) and is released at once.

    A watch that calls back when it fires (``on_ready``: FoundationDB's, a binding
    future) is awaited through that callback, with no thread held; others in a thread.
    """
    on_ready = getattr(watch, "on_ready", None)
    if on_ready is not None:
        return await _await_watch_callback(watch, on_ready, timeout)
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
        await done
    except BaseException:
        watch.cancel()
        raise
    return fired[0]


async def _await_watch_callback(
    watch: Watch, on_ready: Callable[[Callable[[], None]], None], timeout: float | None
) -> bool:
    schedule, wake, done = _one_shot()

    def ready() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits
            schedule(wake)

    on_ready(ready)
    try:
        if not await _within(done, timeout):
            return False
    except BaseException:
        watch.cancel()
        raise
    return watch.wait(1.0)  # it is ready: says at once whether it fired or failed


async def _within(done: Any, timeout: float | None) -> bool:
    """Await ``done``; False if ``timeout`` seconds pass first (None: no limit)."""
    if timeout is None:
        await done
        return True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        with trio.move_on_after(timeout):
            await done
            return True
        return False
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        return False
    return True


async def sleep(seconds: float) -> None:
    """Sleep on whichever loop is running (asyncio's or trio's own sleep)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        await trio.sleep(seconds)
        return
    await asyncio.sleep(seconds)
