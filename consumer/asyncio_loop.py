"""Where asyncio handlers run: one asyncio event loop in a thread of its own, per consumer.

Theory of operation
-------------------
The consumer is a trio program; an ``async def`` handler registered for asyncio (the
default, see :data:`quick.app.LOOPS`) cannot run in trio. :class:`AsyncioLoop` starts
one asyncio loop in a dedicated daemon thread the first time such a handler runs, and
:meth:`AsyncioLoop.run` is what an async runner awaits instead of the handler: it
starts the handler as an asyncio task on that loop (``loop.call_soon_threadsafe``)
and parks the runner's trio task until the task's done-callback wakes it
(``TrioToken.run_sync_soon``). So each attempt costs two thread hand-offs and no
thread of its own, every asyncio handler of the consumer shares one loop (as asyncio
libraries expect: a client made on that loop stays usable by later jobs), and the trio
side keeps everything else: the slots, the timeout (``trio.fail_after``), the lease
keeper, the group committer.

Why not trio's guest mode (trio hosted on an asyncio loop, both in one thread): then
an asyncio handler that blocks its loop (a sync call, a CPU-bound step) would block
the consumer's trio side too, its lease keeper included, and the worker's leases would
expire under it; here it blocks only the other asyncio handlers. Guest mode would also
make every consumer start on asyncio, and trio handlers pay for it. Measured with
``scripts/bench_asyncio_bridge.py`` (see ``docs/benchmarks.md``).

Cancellation: when the awaiting trio task is cancelled (the handler's timeout, a lost
lease, ``quick.cancel``, the end of a graceful stop's grace), the asyncio task is
cancelled (``Task.cancel``, so the handler sees ``asyncio.CancelledError`` at its
``await``) and the trio task waits, shielded, for it to finish unwinding, at most
:data:`CANCEL_WAIT` seconds; a handler that ignores the cancellation longer is
abandoned there (it keeps running on the loop, its outcome discarded) and
``trio.Cancelled`` goes on. :meth:`AsyncioLoop.close` cancels whatever still runs on
the loop, stops it and joins its thread (at most :data:`CANCEL_WAIT` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import trio

__all__ = ["AsyncioLoop", "CANCEL_WAIT"]

#: Seconds a cancelled asyncio handler gets to unwind (its ``finally`` blocks, an
#: ``async with`` closing a connection) before it is abandoned: long enough for a
#: clean close over a local network, short enough not to hold a stop.
CANCEL_WAIT = 1.0


class _Attempt:
    """One handler call crossing to the loop and back (its task and its outcome)."""

    __slots__ = ("done", "error", "result", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class AsyncioLoop:
    """One consumer's asyncio loop and its thread, started on first use.

    Use it as a context manager (``with AsyncioLoop() as loop:``), so the loop is
    closed when the consumer ends; see the module docstring.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> AsyncioLoop:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def started(self) -> bool:
        """Whether the loop's thread was started (the first asyncio handler ran)."""
        return self._thread is not None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=_serve, args=(loop, ready), name="quick-asyncio", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    async def run(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        """``await fn(*args)`` on the asyncio loop; its result, or its exception.

        Cancellation: see the module docstring. An ``asyncio.CancelledError`` that the
        handler raises without being cancelled from here becomes a ``RuntimeError`` (a
        failed attempt), so it cannot pass for trio's cancellation.
        """
        loop = self._running_loop()
        token = trio.lowlevel.current_trio_token()
        attempt = _Attempt()

        def finished(task: asyncio.Task[Any]) -> None:  # on the loop's thread
            if task.cancelled():
                attempt.error = RuntimeError("the asyncio handler was cancelled")
            elif task.exception() is not None:
                attempt.error = task.exception()
            else:
                attempt.result = task.result()
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(attempt.done.set)

        def start() -> None:  # on the loop's thread
            try:
                attempt.task = loop.create_task(fn(*args))
            except BaseException as error:  # fn(*args) raised: the attempt failed
                attempt.error = error
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(attempt.done.set)
                return
            attempt.task.add_done_callback(finished)

        loop.call_soon_threadsafe(start)
        try:
            await attempt.done.wait()
        except trio.Cancelled:
            loop.call_soon_threadsafe(_cancel, attempt)
            with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_WAIT):
                await attempt.done.wait()
            raise
        if attempt.error is not None:
            raise attempt.error
        return attempt.result

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join its thread (bounded)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed already
            loop.call_soon_threadsafe(_stop, loop)
        thread.join(CANCEL_WAIT)


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    """The loop thread's body: run the loop until :func:`_stop`, then close it."""
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _cancel(attempt: _Attempt) -> None:
    """Cancel ``attempt``'s task (on the loop's thread; started before this runs, since
    the loop runs its thread-safe callbacks in order)."""
    if attempt.task is not None:
        attempt.task.cancel()


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task on ``loop``, let them unwind, then stop it (on its thread)."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if not tasks:
        loop.stop()
        return
    gathered = asyncio.gather(*tasks, return_exceptions=True)
    gathered.add_done_callback(lambda _: loop.stop())
    loop.call_later(CANCEL_WAIT / 2, loop.stop)  # a task that ignores cancellation
