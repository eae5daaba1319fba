"""Async handlers, and handlers with a timeout: the async runners and their group committer.

Theory of operation
-------------------
Claims whose handler is ``async def`` or has a ``timeout`` wait in :attr:`Runners.queue`.
``concurrency`` runner tasks take them one at a time, each holding one of the consumer's
slots (shared with the lanes) while its handler runs under a cancel scope: a trio
handler in trio, an asyncio one on the consumer's asyncio loop
(:mod:`consumer.asyncio_loop`, awaited from trio), a plain ``def`` handler with a
timeout in a thread, abandoned when it times out. A
finished attempt goes to one **group committer** through a memory channel; it records
every attempt waiting in one transaction (:func:`quick.outcomes.settle_batch`), and
while one batch commits the next gathers. A transactional handler that succeeded has
already completed its job in its own transaction and is only reported.

An attempt the store cannot record now (an outage, a full disk) is retried until it
commits (:mod:`consumer.resilience`), and given up only when the consumer is killed or
its grace period has passed: those jobs run again once their leases expire.

Cancellation: a lost lease cancels the handler's scope (the keeper sets ``held.scope``'s
cancel); the attempt is reported as ``lease_lost`` and recorded nowhere. A job cancelled
by ``quick.cancel`` is cancelled the same way (or not started), and its attempt is
recorded with :class:`quick.JobCancelled`, which ends the job as cancelled. The committer is
shielded and ends only when every runner has closed its end of the channel, so an
attempt that finished is never left unrecorded, even when the consumer is cancelled.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from consumer.asyncio_loop import AsyncioLoop
from consumer.bridge import Bridge
from consumer.keeper import Held
from consumer.lanes import Finished, HandlerClock, may_start
from consumer.resilience import Patience
from keyspace.errors import QuickError
from keyspace.protocol import Database
from quick.errors import JobCancelled, LeaseLost
from quick.jobs import now_ms
from quick.outcomes import (
    Attempt,
    Outcome,
    meta_for,
    run_transactional,
    settle_batch,
    with_result,
)
from quick.tracecontext import ainvoke
from quick.trio_handlers import call_handler, within_timeout

__all__ = ["Runners"]

log = logging.getLogger("quick.consumer")


@dataclass(frozen=True, slots=True)
class _Pending:
    """An async runner's finished attempt, waiting for the group committer."""

    held: Held
    attempt: Attempt
    duration: float
    lease_left_ms: int


class Runners:
    """The async runners of one consumer and their group committer.

    Args:
        db: the store the handlers' transactions run on.
        bridge: the consumer's bridge, through which the committer records attempts.
        slots: the consumer's ``concurrency`` slots, shared with the lanes.
        stopping: set when the consumer stops; runners then take no new claim.
        report: the consumer's account of settled attempts (counts, logs, metrics).
        patience: how settlements wait out a store that does not answer.
        start_margin_ms: a claim starts only with more of its lease left than this
            (:func:`consumer.lanes.may_start`); one with less is dropped unstarted.
        asyncio_loop: where asyncio handlers run (the consumer's; a new one if None).
    """

    def __init__(
        self,
        db: Database,
        bridge: Bridge,
        slots: trio.CapacityLimiter,
        stopping: trio.Event,
        report: Callable[[list[Finished]], None],
        start_margin_ms: int = 0,
        *,
        patience: Patience | None = None,
        asyncio_loop: AsyncioLoop | None = None,
    ) -> None:
        self.db = db
        self.asyncio_loop = asyncio_loop or AsyncioLoop()
        self.patience = patience or Patience()
        self.bridge = bridge
        self.queue: deque[Held] = deque()
        self._slots = slots
        self._stopping = stopping
        self._report = report
        self._start_margin_ms = start_margin_ms
        #: Each runner's clock: how long its handler in hand has run.
        self.clocks: list[HandlerClock] = []
        self._idle: list[trio.Event] = []

    def start(self, committer: trio.Nursery, runners: trio.Nursery, count: int) -> None:
        """Start the group committer in ``committer`` and ``count`` runners in ``runners``.

        The committer ends once every runner has returned (when the consumer stops and
        the queue is empty) or been cancelled; give it a nursery that outlives them.
        """
        send, receive = trio.open_memory_channel[_Pending](math.inf)
        committer.start_soon(self._commit, receive)
        for _ in range(count):
            runners.start_soon(self._runner, send.clone())
        send.close()

    def wake(self) -> None:
        """Wake an idle runner for each claim waiting (as many as there are idle)."""
        for _ in range(min(len(self.queue), len(self._idle))):
            self._idle.pop().set()

    def wake_all(self) -> None:
        """Wake every idle runner (to find the consumer stopping)."""
        while self._idle:
            self._idle.pop().set()

    async def _runner(self, attempts: trio.MemorySendChannel[_Pending]) -> None:
        clock = HandlerClock()
        self.clocks.append(clock)
        async with attempts:
            while True:
                if not self.queue:
                    if self._stopping.is_set():
                        return
                    wake = trio.Event()
                    self._idle.append(wake)
                    await wake.wait()
                    continue
                async with self._slots:
                    if self._stopping.is_set() or not self.queue:
                        continue
                    held = self.queue.popleft()
                    await self._run_async(held, attempts, clock)

    async def _run_async(
        self, held: Held, attempts: trio.MemorySendChannel[_Pending], clock: HandlerClock
    ) -> None:
        config = held.config
        assert config is not None
        claim = held.claim
        now = now_ms()
        if not may_start(held, now, self._start_margin_ms):
            self._report([Finished(held, Outcome.LEASE_LOST, 0.0, started=False)])
            return
        left = claim.lease_until_ms - now
        started = time.perf_counter()
        error: BaseException | None = None
        output: Any = None
        clock.since = time.monotonic()
        with trio.CancelScope() as scope:
            held.scope = scope
            try:
                if held.signals.cancelled:
                    raise JobCancelled(claim.job_id)  # cancelled before it started
                output = await within_timeout(config, lambda: self._invoke(held))
            except LeaseLost:
                held.lost = True
            except Exception as exc:
                error = exc
            finally:
                clock.since = None
        held.scope = None
        duration = time.perf_counter() - started
        if held.signals.cancelled and not held.lost:
            error = JobCancelled(claim.job_id)  # whatever it did: the job ends cancelled
        if held.lost:
            self._report([Finished(held, Outcome.LEASE_LOST, duration, lease_left_ms=left)])
            return
        if config.transactional and error is None:
            self._report([Finished(held, Outcome.COMPLETED, duration, lease_left_ms=left)])
            return
        # with_result: a result that cannot be stored fails here, so the report says why.
        attempt = with_result(Attempt(claim, config, error, output))
        pending = _Pending(held, attempt, duration, left)
        attempts.send_nowait(pending)

    async def _invoke(self, held: Held) -> Any:
        """Run the handler; return what it returned (a workflow step's output)."""
        config, claim = held.config, held.claim
        assert config is not None
        meta = meta_for(claim, held.signals)
        if config.transactional and not config.is_async:
            return await trio.to_thread.run_sync(
                self.db.transact, run_transactional, config, claim, meta, abandon_on_cancel=True
            )
        if config.on_asyncio:
            # ainvoke runs on the loop, so the attempt's span (if traced) is the
            # asyncio task's: the handler's own spans become its children.
            return await self.asyncio_loop.run(ainvoke, config.handler, meta, claim.payload, meta)
        return await call_handler(config, claim.payload, meta)

    async def _commit(self, receive: trio.MemoryReceiveChannel[_Pending]) -> None:
        """Group commit for the async runners: every attempt waiting, in one transaction.

        While one batch commits, the next gathers. Shielded: it ends when every runner
        has closed its end of the channel, so no finished attempt is left unrecorded.
        """
        with trio.CancelScope(shield=True):
            async with receive:
                async for first in receive:
                    batch = [first]
                    while True:
                        try:
                            batch.append(receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    attempts = [p.attempt for p in batch]
                    outcomes: list[Outcome] | None
                    try:
                        outcomes = await self.patience.retry(
                            "recording attempts", self.bridge.call_db, settle_batch, attempts
                        )
                    except QuickError as failure:
                        log.error("recording %d attempts failed: %s", len(batch), failure)
                        outcomes = None
                    if outcomes is None:  # failed, or given up: the leases expire
                        outcomes = [Outcome.LEASE_LOST] * len(batch)
                    self._report(
                        [
                            Finished(
                                p.held,
                                outcome,
                                p.duration,
                                p.attempt.error,
                                lease_left_ms=p.lease_left_ms,
                            )
                            for p, outcome in zip(batch, outcomes, strict=True)
                        ]
                    )
