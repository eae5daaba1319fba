"""The consumer: scanner, workers, lease extenders and cron, children of one trio nursery.

Theory of operation
-------------------
* The **scanner** walks the pointer index (snapshot reads, a cursor carried across
  rounds so no queue starves), picks a random due queue, and claims a batch (at
  most ``batch_size``) while fewer than ``concurrency + batch_size`` jobs are held:
  QuiCK's queue lease, then the job batch. Claims go to the workers through a
  memory channel, so one batch waits ready while the workers run the last. With nothing
  due it sleeps on a watch of the ``("wake",)`` key, which producers bump whenever
  a queue gains earlier work, until then or the next known visibility time (at most
  ``max_idle``): an idle consumer costs no CPU and wakes about a millisecond after an
  enqueue commits. When queues are due but all leased by others it backs off briefly.
* Each **worker** runs one job at a time: the handler (``async def`` in trio, plain
  ``def`` in a thread, ``def handler(tr, payload, meta)`` inside the transaction that
  completes the job) beside a **lease extender** that heartbeats every third of the
  lease. If the lease is lost, the handler's cancel scope is cancelled and its
  outcome discarded. A handler past its ``timeout`` counts as a failed attempt.
* Successes go to the **group committer**, which records every success waiting
  (up to ``COMPLETE_BATCH``, workflow steps included) in one transaction; while it
  commits, the next batch gathers. Failures and transactional handlers settle alone.
* The **cron activator** enqueues due schedules once a second.
* With :class:`~consumer.metrics.ConsumerMetrics`, each settled attempt increments its
  counters, and a **depth refresher** reads queue depths every ``depth_interval``.
* :meth:`Consumer.stop` is graceful: claiming stops, claims not yet started are
  released at once (visible to other consumers), running jobs get ``grace`` seconds
  to finish, then are cancelled (their leases expire and others retry them).
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

import quick
from consumer.bridge import Bridge
from keyspace.layout import WAKE
from keyspace.protocol import Database, Transaction, Watch
from quick import pointers
from quick.app import App, JobConfig
from quick.errors import LeaseLost
from quick.jobs import Claim, now_ms
from quick.leases import holds
from quick.outcomes import (
    Outcome,
    complete_with,
    describe_error,
    job_config,
    meta_for,
    settle,
    settle_successes,
)

if TYPE_CHECKING:  # prometheus_client is imported only by consumers that export metrics
    from consumer.metrics import ConsumerMetrics

__all__ = ["ConsumerConfig", "Consumer"]

log = logging.getLogger("quick.consumer")

#: The longest pause between scans while due queues are all leased by other consumers.
BUSY_BACKOFF = 0.005
#: The most successes the group committer completes in one transaction.
COMPLETE_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerConfig:
    """How a consumer runs."""

    concurrency: int = 8
    batch_size: int = 10
    lease_ms: int = 30_000
    owner: str = field(default_factory=lambda: f"consumer-{uuid.uuid4().hex[:8]}")
    max_idle: float = 1.0
    scan_limit: int = 100
    grace: float = 30.0
    cron: bool = True


class Consumer:
    """Drains queues with the handlers of ``app``; run it with ``await consumer.run()``.

    ``metrics``, when given, records this consumer's jobs, claims and lease losses and
    the queue depths (one :class:`~consumer.metrics.ConsumerMetrics` per consumer).
    """

    def __init__(
        self,
        db: Database,
        app: App,
        config: ConsumerConfig | None = None,
        *,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.db = db
        self.app = app
        self.config = config or ConsumerConfig()
        self.metrics = metrics
        if metrics is not None:
            metrics.running.set_function(lambda: self._busy)
        self.bridge = Bridge(db, limit=max(2, self.config.concurrency + 2))
        self.outcomes: Counter[str] = Counter()
        self._busy = 0
        self._capacity = trio.Event()
        self._stopping = trio.Event()
        self._cancel_scope: trio.CancelScope | None = None
        self._watch: Watch | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming, release unstarted claims, let running jobs finish within the grace."""
        self._stopping.set()
        self._capacity.set()
        if self._watch is not None:
            self._watch.cancel()

    def kill(self) -> None:
        """Stop at once: running jobs are abandoned and their leases left to expire."""
        self.stop()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or cancellation); ``nursery.start`` returns once claiming."""
        config = self.config
        send, receive = trio.open_memory_channel[Claim](math.inf)
        done_send, done_receive = trio.open_memory_channel[_Completion](math.inf)
        with trio.CancelScope() as scope:
            self._cancel_scope = scope
            async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
                outer.start_soon(self._complete_batches, done_receive)
                for _ in range(config.concurrency):
                    nursery.start_soon(self._worker, receive.clone(), done_send.clone())
                receive.close()
                done_send.close()
                if config.cron:
                    nursery.start_soon(self._every, 1.0, "cron activation", quick.activate_due)
                if self.metrics is not None and self.metrics.depth_interval is not None:
                    refresh = self.metrics.refresh_depth
                    interval = self.metrics.depth_interval
                    nursery.start_soon(self._every, interval, "queue depth refresh", refresh)
                task_status.started()
                async with send:
                    await self._scan(send)
                nursery.cancel_scope.deadline = trio.current_time() + config.grace

    # -- scanning and claiming -------------------------------------------------------------

    async def _scan(self, send: trio.MemorySendChannel[Claim]) -> None:
        config = self.config
        cursor: bytes | None = None
        pause = 0.001
        rng = random.Random()
        while not self._stopping.is_set():
            free = config.concurrency + config.batch_size - self._busy
            if free <= 0:
                self._capacity = trio.Event()
                await self._capacity.wait()
                continue
            now = now_ms()
            due, watch = await self.bridge.call_db(_scan_due, now, cursor, config.scan_limit)
            cursor = due[-1][0] if len(due) == config.scan_limit else None
            claims: list[Claim] = []
            for _, queue in rng.sample(due, min(len(due), 3)):
                claims = await self.bridge.run(
                    quick.claim,
                    self.db,
                    queue,
                    config.owner,
                    limit=min(config.batch_size, free),
                    lease_ms=config.lease_ms,
                )
                if claims:
                    break
            if watch is not None:
                await self._idle(*watch)
                continue
            if not claims:
                with trio.move_on_after(pause):
                    await self._stopping.wait()
                pause = min(pause * 2, BUSY_BACKOFF)
                continue
            pause = 0.001
            if self.metrics is not None:
                self.metrics.claims.inc(len(claims))
            for claim in claims:
                self._busy += 1
                await send.send(claim)

    async def _idle(self, watch: Watch, next_ms: int | None) -> None:
        """Sleep until a producer bumps the wake key, the next pointer is due, or ``max_idle``."""
        timeout = self.config.max_idle
        if next_ms is not None:
            timeout = min(timeout, max(0.0, (next_ms - now_ms()) / 1000))
        self._watch = watch
        try:
            if not self._stopping.is_set():
                await trio.to_thread.run_sync(watch.wait, timeout, abandon_on_cancel=True)
        finally:
            self._watch = None
            watch.cancel()

    # -- running jobs -------------------------------------------------------------------

    async def _worker(
        self,
        receive: trio.MemoryReceiveChannel[Claim],
        completions: trio.MemorySendChannel[_Completion],
    ) -> None:
        async with receive, completions:
            async for claim in receive:
                try:
                    if self._stopping.is_set():
                        await self._release(claim)
                    else:
                        await self._execute(claim, completions)
                finally:
                    self._busy -= 1
                    self._capacity.set()

    async def _release(self, claim: Claim) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await self.bridge.run(quick.release, self.db, claim)
            except LeaseLost:
                if self.metrics is not None:
                    self.metrics.lease_losses.inc()
                return
        self.outcomes["released"] += 1

    async def _execute(
        self, claim: Claim, completions: trio.MemorySendChannel[_Completion]
    ) -> None:
        config = job_config(self.app, claim)
        started = time.perf_counter()
        error: BaseException | None = None
        output: Any = None
        lost = False
        if config is not None:
            async with trio.open_nursery() as nursery:
                job_scope = trio.CancelScope()

                async def extend() -> None:
                    nonlocal lost
                    lost = await self._extend(claim, job_scope)

                nursery.start_soon(extend)
                with job_scope:
                    try:
                        if config.timeout is not None:
                            with trio.fail_after(config.timeout):
                                output = await self._invoke(config, claim)
                        else:
                            output = await self._invoke(config, claim)
                    except trio.TooSlowError:
                        error = TimeoutError(f"timed out after {config.timeout} s")
                    except LeaseLost:
                        lost = True
                    except Exception as exc:
                        error = exc
                nursery.cancel_scope.cancel()
        if lost:
            outcome = Outcome.LEASE_LOST
        elif config is not None and config.transactional and error is None:
            outcome = Outcome.COMPLETED
        elif config is not None and error is None:
            with trio.CancelScope(shield=True):
                outcome = await self._complete(claim, config, output, completions)
        else:
            with trio.CancelScope(shield=True):
                outcome = await self.bridge.run(settle, self.db, claim, config, error, output)
        duration = time.perf_counter() - started
        self.outcomes[outcome.value] += 1
        if self.metrics is not None:
            self.metrics.job_settled(claim.topic, outcome, duration)
        log.info(
            "job %s",
            outcome.value,
            extra={
                "queue": claim.queue_id,
                "topic": claim.topic,
                "job_id": claim.job_id,
                "attempt": claim.attempt,
                "outcome": outcome.value,
                "duration": duration,
                "error": describe_error(error) if error is not None else None,
            },
        )

    async def _complete(
        self,
        claim: Claim,
        config: JobConfig,
        output: Any,
        completions: trio.MemorySendChannel[_Completion],
    ) -> Outcome:
        """Hand a success to the group committer and wait for its transaction."""
        pending = _Completion((claim, config, output))
        completions.send_nowait(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.outcome

    async def _complete_batches(self, receive: trio.MemoryReceiveChannel[_Completion]) -> None:
        """Group commit: complete every success waiting, up to ``COMPLETE_BATCH``, at once.

        While one batch commits, the next gathers, so a busy consumer completes many
        jobs per transaction and an idle one still completes each job at once. Shielded:
        it ends when every worker has closed its end of the channel, so no worker is
        left waiting on a completion that will never come.
        """
        with trio.CancelScope(shield=True):
            async with receive:
                async for first in receive:
                    batch = [first]
                    while len(batch) < COMPLETE_BATCH:
                        try:
                            batch.append(receive.receive_nowait())
                        except trio.WouldBlock:
                            break
                    try:
                        results = await self.bridge.run(
                            settle_successes, self.db, [p.success for p in batch]
                        )
                    except Exception as error:
                        for pending in batch:
                            pending.error = error
                            pending.done.set()
                        continue
                    for pending, outcome in zip(batch, results, strict=True):
                        pending.outcome = outcome
                        pending.done.set()

    async def _invoke(self, config: JobConfig, claim: Claim) -> Any:
        """Run the handler; return what it returned (a workflow step's output)."""
        meta = meta_for(claim)
        if config.is_async:
            return await config.handler(claim.payload, meta)
        if config.transactional:

            def body(tr: Transaction) -> Any:
                if not holds(tr, claim):
                    return None  # an earlier try committed the handler and the completion
                output = config.handler(tr, claim.payload, meta)
                complete_with(tr, claim, output)
                return output

            return await trio.to_thread.run_sync(self.db.transact, body, abandon_on_cancel=True)
        return await trio.to_thread.run_sync(
            config.handler, claim.payload, meta, abandon_on_cancel=True
        )

    async def _extend(self, claim: Claim, job_scope: trio.CancelScope) -> bool:
        """Heartbeat every third of the lease; on lease loss cancel the job and return True."""
        interval = self.config.lease_ms / 3000
        current = claim
        while True:
            await trio.sleep(interval)
            try:
                current = await self.bridge.run(
                    quick.heartbeat, self.db, current, lease_ms=self.config.lease_ms
                )
            except LeaseLost:
                job_scope.cancel()
                return True

    # -- periodic chores (cron, queue depth) -----------------------------------------------

    async def _every(self, interval: float, what: str, chore: Callable[[Database], Any]) -> None:
        """``chore(db)`` every ``interval`` seconds until stopping; failures are logged."""
        while not self._stopping.is_set():
            try:
                await self.bridge.call_db(chore)
            except quick.QuickError as error:
                log.warning("%s failed: %s", what, error)
            with trio.move_on_after(interval):
                await self._stopping.wait()


Due = list[tuple[bytes, str]]


class _Completion:
    """A success waiting for the group committer."""

    __slots__ = ("success", "done", "outcome", "error")

    def __init__(self, success: tuple[Claim, JobConfig, Any]) -> None:
        self.success = success
        self.done = trio.Event()
        self.outcome = Outcome.LEASE_LOST
        self.error: BaseException | None = None


def _scan_due(
    db: Database, now: int, cursor: bytes | None, limit: int
) -> tuple[Due, tuple[Watch, int | None] | None]:
    """Due queues after ``cursor``; when none, a watch on the wake key and the next visibility.

    One snapshot serves both, so work a producer commits after the scan either shows
    in the next visibility or bumps the watched key: no wake-up is lost.
    """

    def body(tr: Transaction) -> tuple[Due, tuple[Watch, int | None] | None]:
        due = pointers.scan(tr.snapshot, now, after=cursor, limit=limit)
        if due or cursor is not None:
            return due, None
        return due, (tr.watch(WAKE), pointers.next_visible(tr.snapshot))

    return db.transact(body)
