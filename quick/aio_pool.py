"""The bounded pool that runs blocking store calls for async callers, in batches.

A thread hop per call costs more than an embedded-engine enqueue itself (the loop
wakes a thread, the thread wakes the loop), so the workers here run calls back to
back: a worker takes a call, then every call already queued, up to
:data:`BATCH_CALLS` or :data:`BATCH_SECONDS` of work, and hands each loop the results
of its calls with one thread-safe wake-up per batch. Each call is still its own call
(its own transaction, its own retry loop): only the waiting is shared.

Workers are daemon threads of this process, at most :data:`POOL_SIZE`, started on
demand; the first stays (idle on the queue), extra ones leave once no worker is stuck.
Calls from several event loops may share them; each result goes back to the loop that
made the call. A forked child starts with an empty pool of its own (the parent's
threads do not exist there).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

__all__ = ["BATCH_CALLS", "BATCH_SECONDS", "POOL_SIZE", "STALL_SECONDS", "Call", "submit"]

#: Most worker threads. One runs calls while they are quick: commits on the embedded
#: engine serialise on its writer lock and Python holds the GIL, so a second busy
#: thread only adds switching (it halved throughput when measured). More start only
#: while every worker is stuck in one call (a commit waiting on another process's
#: lock, a slow disk), so such a call does not hold up the calls queued behind it.
POOL_SIZE = 4
#: Seconds a worker may spend in one call before a call submitted meanwhile starts
#: another worker: far above a quick call (~0.1 ms) and above a full garbage collection
#: of a process with 10,000 live tasks (~0.1 s, which stalls every thread alike), so
#: only a call waiting on something outside the process adds a worker.
STALL_SECONDS = 0.25
#: Most calls a worker runs before handing results back: bounds how many tasks one
#: loop iteration resumes (256 take a few ms; 64 gave a few percent less throughput).
BATCH_CALLS = 256
#: Most seconds of work a worker does before handing results back: how long a result
#: may wait for its batch-mates when calls queue up (a lone call is handed back at once).
BATCH_SECONDS = 0.01


class Call:
    """One blocking call and its outcome; :mod:`quick.aio_waiting` says how its caller
    waits (:meth:`finish`, run on the caller's loop) and when it stopped waiting
    (:attr:`cancelled`: a call not yet started is then skipped).

    A call is as small as it can be: 10,000 callers waiting are 10,000 of them, and a
    full garbage collection's pause grows with every object alive.
    """

    __slots__ = ("args", "error", "fn", "kwargs", "loop", "result")

    def __init__(self, loop: Any, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        #: The caller's loop: an asyncio loop (``call_soon_threadsafe``) or a trio token
        #: (``run_sync_soon``); the results of one batch reach it in one wake-up.
        self.loop = loop
        self.fn: Callable[..., Any] | None = fn
        self.args = args
        self.kwargs = kwargs
        self.result: Any = None
        self.error: BaseException | None = None

    @property
    def cancelled(self) -> bool:
        """Whether the caller has stopped waiting."""
        return False

    def finish(self) -> None:
        """Hand the outcome to the caller (on its loop)."""

    def run(self) -> None:
        fn = self.fn
        assert fn is not None, "a call runs once"
        try:
            self.result = fn(*self.args, **self.kwargs)
        except BaseException as error:  # handed to the caller, whatever it is
            self.error = error
        self.fn = self.args = self.kwargs = None


class _Pool:
    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.workers = 0
        #: When each busy worker started its current call (by thread id).
        self.busy_since: dict[int, float] = {}

    def submit(self, call: Call) -> None:
        self.calls.put(call)
        with self.lock:
            if self.workers >= POOL_SIZE or self.stuck(time.monotonic()) < self.workers:
                return  # a worker that is idle, between batches or in a quick call takes it
            self.workers += 1
        threading.Thread(target=self.work, name="quick-aio", daemon=True).start()

    def stuck(self, now: float, besides: int | None = None) -> int:
        """How many workers (other than ``besides``) have been in one call for the stall time."""
        busy = list(self.busy_since.items())
        return sum(1 for t, since in busy if t != besides and now - since >= STALL_SECONDS)

    def work(self) -> None:
        me = threading.get_ident()
        while True:
            batch = [self.calls.get()]
            deadline = time.monotonic() + BATCH_SECONDS
            done = []
            while True:
                call = batch.pop()
                if not call.cancelled:
                    self.busy_since[me] = time.monotonic()
                    call.run()
                    del self.busy_since[me]
                done.append(call)
                if len(done) >= BATCH_CALLS or time.monotonic() >= deadline:
                    break
                try:
                    batch.append(self.calls.get_nowait())
                except queue.Empty:
                    break
            _deliver(done)
            if self.retire(me):
                return

    def retire(self, me: int) -> bool:
        """True (and counted out) when this worker is an extra one no longer needed: no
        other worker is stuck in a call, so one can serve the queue again."""
        with self.lock:
            if self.workers > 1 and not self.stuck(time.monotonic(), besides=me):
                self.workers -= 1
                return True
            return False


def _deliver(done: list[Call]) -> None:
    """Wake each loop once for its calls in ``done``."""
    by_loop: dict[Any, list[Call]] = defaultdict(list)
    for call in done:
        by_loop[call.loop].append(call)
    for loop, calls in by_loop.items():
        schedule = getattr(loop, "call_soon_threadsafe", None) or loop.run_sync_soon
        with contextlib.suppress(RuntimeError):  # a closed loop: no one is waiting any more
            schedule(functools.partial(_finish, calls))


def _finish(calls: list[Call]) -> None:
    for call in calls:
        call.finish()


_POOL = _Pool()


def _after_fork() -> None:
    global _POOL
    _POOL = _Pool()


os.register_at_fork(after_in_child=_after_fork)


def submit(call: Call) -> None:
    """Queue ``call`` for the pool; its ``finish`` runs on its loop once it has run."""
    _POOL.submit(call)
