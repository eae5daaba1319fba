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

Schedule = Callable[[Callable[[], None]], None]


class Call:
    """One blocking call, its outcome, and how to wake its caller's loop."""

    __slots__ = ("cancelled", "error", "fn", "on_done", "result", "schedule")

    def __init__(self, fn: Callable[[], Any], schedule: Schedule, on_done: Callable[[], None]):
        self.fn = fn
        self.schedule = schedule
        #: Run on the caller's loop once the outcome is set.
        self.on_done = on_done
        #: Set by the caller when it stops waiting; a call not yet started is skipped.
        self.cancelled = False
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as error:  # handed to the caller, whatever it is
            self.error = error


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
    by_loop: dict[Schedule, list[Call]] = defaultdict(list)
    for call in done:
        by_loop[call.schedule].append(call)
    for schedule, calls in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: no one is waiting any more
            schedule(functools.partial(_finish, calls))


def _finish(calls: list[Call]) -> None:
    for call in calls:
        call.on_done()


_POOL = _Pool()


def _after_fork() -> None:
    global _POOL
    _POOL = _Pool()


os.register_at_fork(after_in_child=_after_fork)


def submit(call: Call) -> None:
    """Queue ``call`` for the pool; its ``on_done`` runs on its loop once it has run."""
    _POOL.submit(call)
