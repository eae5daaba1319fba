"""The consumer: a claimer, thread lanes, async runners, one lease keeper and chores,
children of one trio nursery.

Theory of operation
-------------------
* The **claimer** leases work in *claim rounds* (:func:`quick.claim_rounds.claim_round`,
  each run and sized by :class:`consumer.claimer.RoundClaimer`):
  one transaction scans a page of the pointer index, picks due queues at random and
  leases a batch across them. It claims again as soon as fewer than one batch of
  claims is waiting, so the next batch is in flight while the last one runs. The
  batch is sized to the work (:mod:`consumer.sizing`): up to ``batch_size``, about
  :data:`consumer.config.CLAIM_SECONDS` of work for the slots at the handlers' average
  time, and no more than the idle slots can start while handlers are slow or their time
  is unknown, so slow jobs are not hoarded while another consumer is idle; nor more
  than the slots start within a third of the lease, at what a job costs its slot with
  its share of the recording (:func:`consumer.sizing.wait_budget`).
  With nothing due it sleeps on a watch of the ``("wake",)`` key, which producers
  bump whenever a queue gains earlier work, until then or the next known visibility
  time (at most ``max_idle``); with due queues all leased by others it backs off briefly.
  Only the holder of the store's **wake baton** on this host claims as soon as the watch
  fires (:mod:`consumer.baton`); the others claim a little later, unless the baton
  comes to them first. A consumer keeps the baton while it has room for claims and
  gives it up when full.
* Claims of plain ``def`` and transactional handlers go to the **lanes**
  (:mod:`consumer.lanes`): runs of handlers in a thread, recorded in one transaction
  from that thread. ``async def`` handlers, and handlers with a ``timeout``, go to the
  **async runners** (:mod:`consumer.runners`), which run each under a cancel scope (in
  trio, or for an asyncio handler on the consumer's asyncio loop,
  :mod:`consumer.asyncio_loop`) and hand the attempt to one **group committer** that
  records every attempt waiting in one transaction. Lanes and runners share
  ``concurrency`` slots.
* The **lease keeper** (:mod:`consumer.keeper`) renews every claim held, in one
  transaction per page, and marks (and cancels) the ones another consumer took.
* The **stall watch** counts the slots held by long handlers: it replaces a stalled
  lane while claims wait, and gives the waiting claims back when every slot has been
  stalled for :data:`consumer.sizing.HANDBACK_SECONDS`.
* **Chores**: cron activation every second, the queue depth refresh with metrics, and
  the purge of finished jobs' tombstones older than ``keep_finished_ms``.
* **Outages**: a store that does not answer (a cluster out of reach, a full disk) ends
  no task; each waits and retries, and :attr:`Consumer.patience` logs the outage once
  (:mod:`consumer.resilience`).
* :meth:`Consumer.stop` is graceful: claiming stops, claims not yet started are
  released at once in one transaction (visible to other consumers), running jobs get
  ``grace`` seconds to finish, then are cancelled (their leases expire and others
  retry them). :meth:`Consumer.kill` abandons running jobs at once.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

import quick
from consumer.asyncio_loop import AsyncioLoop
from consumer.baton import FOLLOW_SECONDS, Baton, baton_path
from consumer.bridge import Bridge
from consumer.claimer import RoundClaimer
from consumer.config import (
    BUSY_BACKOFF,
    EWMA_WEIGHT,
    PURGE_INTERVAL,
    PURGE_PAGE,
    ConsumerConfig,
)
from consumer.keeper import Held, LeaseKeeper
from consumer.lanes import Finished, Flags, Lanes
from consumer.resilience import Patience, is_outage
from consumer.runners import Runners
from consumer.sizing import (
    HANDBACK_SECONDS,
    STALL_SECONDS,
    ClaimSize,
    backlog_cap,
    claim_size,
    lanes_wanted,
    stalled,
    wait_budget,
)
from keyspace.identity import store_identity
from keyspace.protocol import Database, Watch
from keyspace.retry import watch_retry_pause
from quick.app import App
from quick.claim_rounds import ClaimRound
from quick.jobs import Claim, now_ms
from quick.leases import release_all
from quick.outcomes import Outcome, describe_error, job_config

if TYPE_CHECKING:  # prometheus_client is imported only by consumers that export metrics
    from consumer.metrics import ConsumerMetrics

__all__ = ["ConsumerConfig", "Consumer"]

log = logging.getLogger("quick.consumer")


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
        self.bridge = Bridge(db, limit=max(4, self.config.concurrency + 4))
        #: How the store's outages are waited out and logged, by every task below.
        self.patience = Patience()
        self.keeper = LeaseKeeper(self.bridge, self.config.lease_ms, patience=self.patience)
        if metrics is not None:
            metrics.running.set_function(lambda: len(self.keeper))
        self.outcomes: Counter[str] = Counter()
        self._slots = trio.CapacityLimiter(self.config.concurrency)
        self._flags = Flags(self.config.start_margin_ms)
        self._flags.patience = self.patience
        self._lanes = Lanes(
            db,
            self._slots,
            self._flags,
            self._report,
            lambda backlog, stalled: lanes_wanted(backlog, self._handler_seconds, stalled),
        )
        #: Stalled slots (lanes among them), as the stall watch last counted them.
        self._stalled = 0
        self._rounds = RoundClaimer(db, self.config, metrics)
        self._capacity = trio.Event()
        self._stopping = trio.Event()
        #: Set when claims are dispatched: wakes the stall watch of an idle consumer.
        self._dispatched = trio.Event()
        #: Where asyncio handlers run: a loop in a thread of its own, started on first use.
        self.asyncio_loop = AsyncioLoop()
        self._runners = Runners(
            db,
            self.bridge,
            self._slots,
            self._stopping,
            self._report,
            self.config.start_margin_ms,
            patience=self.patience,
            asyncio_loop=self.asyncio_loop,
        )
        self._cancel_scope: trio.CancelScope | None = None
        self._watch: Watch | None = None
        self._watch_failures = 0
        self._handler_seconds: float | None = None
        #: What a job costs its slot, handler and share of its recording (an average
        #: like ``_handler_seconds``): how fast waiting claims start (sizing.wait_budget).
        self._job_seconds: float | None = None
        #: The most one claim brings while waiting claims start in time (sizing.backlog_cap).
        self._batch_cap = self.config.batch_size
        self._token: trio.lowlevel.TrioToken | None = None
        #: Which idle consumer of the store on this host claims at once when woken
        #: (consumer.baton); until ``run`` opens it, none: this consumer does.
        self._baton = Baton(None)

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming, release unstarted claims, let running jobs finish within the grace."""
        self.patience.stop_retrying(time.monotonic() + self.config.grace)
        self._stopping.set()
        self._flags.stopping = True
        self._capacity.set()
        self._dispatched.set()
        self._baton.close()
        self._wake_all()
        if self._watch is not None:
            self._watch.cancel()

    def kill(self) -> None:
        """Stop at once: running jobs are abandoned and their leases left to expire."""
        self._flags.killed = True
        self.patience.stop_retrying(time.monotonic())
        self.stop()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or cancellation); ``nursery.start`` returns once claiming."""
        config = self.config
        self._token = trio.lowlevel.current_trio_token()
        self._flags.on_low_water = self._notify_capacity_threadsafe
        with trio.CancelScope() as scope, self.asyncio_loop:
            self._cancel_scope = scope
            async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
                # The runners' group committer lives in ``outer``: it outlives ``nursery``
                # and records every attempt the runners finished.
                self._runners.start(outer, nursery, config.concurrency)
                nursery.start_soon(self.keeper.run)
                nursery.start_soon(self.keeper.watch_cancels)
                nursery.start_soon(self._watch_stalls)
                self._lanes.start(nursery, config.concurrency)
                if config.cron:
                    nursery.start_soon(self._every, 1.0, "cron activation", quick.activate_due)
                if self.metrics is not None and self.metrics.depth_interval is not None:
                    refresh = self.metrics.refresh_depth
                    nursery.start_soon(
                        self._every, self.metrics.depth_interval, "queue depth refresh", refresh
                    )
                if config.keep_finished_ms is not None:
                    nursery.start_soon(self._every, PURGE_INTERVAL, "purge", self._purge)
                task_status.started()
                try:
                    await self._open_baton()
                    await self._claim_loop()
                finally:
                    self._baton.close()
                await self._release_unstarted()
                self._wake_all()
                nursery.cancel_scope.deadline = trio.current_time() + config.grace
                await self._drained()
                nursery.cancel_scope.cancel()

    async def _open_baton(self) -> None:
        """Share the wake baton of this store's consumers on this host (consumer.baton)."""
        if not self.config.wake_baton:
            return
        try:
            identity = await self.patience.retry(
                "store identity", self.bridge.call_db, store_identity, until=self._stopping
            )
        except quick.QuickError as error:  # no baton is no failure: every consumer claims
            log.warning("no wake baton (%s): every idle consumer claims when woken", error)
            return
        if identity is not None and not self._stopping.is_set():
            self._baton = Baton(baton_path(identity))

    async def _drained(self) -> None:
        """Wait until no claim is held (every running job settled)."""
        while len(self.keeper):
            self._capacity = trio.Event()
            await self._capacity.wait()

    # -- claiming ------------------------------------------------------------------------

    def _claim_size(self) -> ClaimSize:
        config = self.config
        self._batch_cap, claim_now = backlog_cap(
            self._batch_cap,
            self._oldest_left_ms(),
            config.lease_ms,
            least=max(1, config.concurrency),
            most=config.batch_size,
        )
        size = claim_size(
            batch_size=self._batch_cap,
            concurrency=config.concurrency,
            running=self._slots.borrowed_tokens,
            stalled=self._stalled,
            waiting=len(self._lanes.queue) + len(self._runners.queue),
            handler_seconds=self._handler_seconds,
            most_waiting=wait_budget(
                lease_ms=config.lease_ms,
                job_seconds=self._job_seconds,
                concurrency=config.concurrency,
            ),
        )
        return size if claim_now else ClaimSize(0, size.low_water)

    def _oldest_left_ms(self) -> int | None:
        """The lease left to the oldest claim still waiting to start (None: none waits)."""
        heads = []
        for waiting in (self._lanes.queue, self._runners.queue):
            with contextlib.suppress(IndexError):  # a lane thread may take it meanwhile
                heads.append(waiting[0].claim.lease_until_ms)
        return min(heads) - now_ms() if heads else None

    async def _claim_loop(self) -> None:
        config = self.config
        cursor: bytes | None = None
        pause = 0.001
        rng = random.Random()
        woken: ClaimRound | None = None  # the round an idle wait ran once woken
        while not self._stopping.is_set():
            size = self._claim_size()
            room = config.concurrency + 2 * size.limit - len(self.keeper)
            limit = min(size.limit, room)
            found: ClaimRound | None
            if woken is not None:
                found, woken = woken, None
            elif size.limit < 1 or room < max(1, size.low_water):
                # Claim again once the slots can take more (see consumer.sizing) and a
                # half batch fits: the next claim is in flight while this one runs.
                # Full: another idle consumer claims new work at once meanwhile.
                self._baton.give_up()
                self._flags.low_water = size.low_water
                self._capacity = trio.Event()
                await self._capacity.wait()
                continue
            else:
                found = await self.patience.retry(
                    "claim round",
                    self.bridge.run,
                    self._claim_round,
                    limit,
                    cursor,
                    rng.random(),
                    until=self._stopping,
                )
            if found is None:
                break  # stopping while the store did not answer
            cursor = found.cursor
            if found.idle is not None:
                # Nothing idles with claims held back: room only grows while idle.
                woken = await self._idle(*found.idle, limit, cursor, rng.random())
                continue
            if not found.claims:
                with trio.move_on_after(pause):
                    await self._stopping.wait()
                pause = min(pause * 2, BUSY_BACKOFF)
                continue
            pause = 0.001
            if self.metrics is not None:
                self.metrics.claims.inc(len(found.claims))
            self._dispatch(found.claims)
        if woken is not None and woken.claims:
            self._dispatch(woken.claims)  # claimed as the stop came: given back with the rest

    def _claim_round(self, limit: int, cursor: bytes | None, seed: float) -> ClaimRound:
        """One claim round in its own transaction (:meth:`RoundClaimer.claim`)."""
        return self._rounds.claim(limit, cursor, seed)

    def _dispatch(self, claims: list[Claim]) -> None:
        held = [Held(claim, job_config(self.app, claim)) for claim in claims]
        self.keeper.add(held)
        for item in held:
            if item.config is not None and item.config.runs_in_trio:
                self._runners.queue.append(item)
            else:
                self._lanes.queue.append(item)
        self._runners.wake()
        self._lanes.wake()
        self._dispatched.set()

    async def _idle(
        self, watch: Watch, next_ms: int | None, limit: int, cursor: bytes | None, seed: float
    ) -> ClaimRound | None:
        """Sleep until a producer bumps the wake key, the next pointer is due, or ``max_idle``;
        then run the next claim round (of up to ``limit`` claims) in the thread that waited
        and return it, so a new job crosses no trio hop between the wake-up and its claim.

        None when the round was not run here: stopping, a failed watch or a round that
        failed (the claim loop then runs it with its usual retries). A failed watch
        returns at once; the pause after it grows with each failure in a row
        (:func:`keyspace.retry.watch_retry_pause`), so a lasting failure does not turn
        idling into back-to-back claim rounds.
        """
        timeout = self.config.max_idle
        if next_ms is not None:
            timeout = min(timeout, max(0.0, (next_ms - now_ms()) / 1000))
        self._watch = watch
        started = trio.current_time()
        found: ClaimRound | None = None
        try:
            if not self._stopping.is_set():
                found = await trio.to_thread.run_sync(
                    self._wait_then_claim,
                    watch,
                    timeout,
                    limit,
                    cursor,
                    seed,
                    abandon_on_cancel=True,
                )
        finally:
            self._watch = None
            watch.cancel()
        self._watch_failures = self._watch_failures + 1 if watch.failed else 0
        remaining = timeout - (trio.current_time() - started)
        pause = watch_retry_pause(self._watch_failures, random.random(), remaining)
        if pause > 0:
            log.debug(
                "watch failed %d time(s) in a row; pausing %.3f s", self._watch_failures, pause
            )
            with trio.move_on_after(pause):
                await self._stopping.wait()
        return found

    def _wait_then_claim(
        self, watch: Watch, timeout: float, limit: int, cursor: bytes | None, seed: float
    ) -> ClaimRound | None:
        """In a worker thread: wait on ``watch``, then run one claim round unless stopping
        (``stop`` cancels the watch and closes the baton) or the watch failed; None when
        no round ran. The holder of the wake baton claims at once; another consumer waits
        up to :data:`~consumer.baton.FOLLOW_SECONDS` more for the baton first, so it claims
        only what the holder left (see :mod:`consumer.baton`)."""
        deadline = time.monotonic() + timeout
        baton = self._baton
        if watch.wait(timeout) and not baton.take(0):
            baton.take(max(0.0, min(FOLLOW_SECONDS, deadline - time.monotonic())))
        if watch.failed or self._flags.stopping:
            return None
        try:
            return self._claim_round(limit, cursor, seed)
        except quick.StorageError:
            return None  # the claim loop runs the round again, through its patience

    def _notify_capacity(self) -> None:
        self._capacity.set()

    def _notify_capacity_threadsafe(self) -> None:
        token = self._token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._notify_capacity)

    async def _release_unstarted(self) -> None:
        """Give back every claim no worker has started, in one transaction."""
        unstarted: list[Held] = []
        for waiting in (self._lanes.queue, self._runners.queue):
            while True:
                try:
                    unstarted.append(waiting.popleft())
                except IndexError:
                    break
        if not unstarted:
            return
        claims = [h.claim for h in unstarted]
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                released = await self.bridge.call_db(release_all, claims, now_ms())
            except quick.StorageError as error:
                if not is_outage(error):
                    raise
                log.warning(
                    "%d unstarted claims not given back (%s): they run once their leases expire",
                    len(claims),
                    error,
                )
            else:
                self.outcomes[Outcome.RELEASED.value] += released
        for held in unstarted:
            self.keeper.forget(held)
        self._capacity.set()

    def _wake_all(self) -> None:
        self._lanes.wake_all()
        self._runners.wake_all()

    async def _watch_stalls(self) -> None:
        """Count the stalled slots every half :data:`~consumer.sizing.STALL_SECONDS` while claims
        are held (an idle consumer sleeps until the next dispatch); wake
        lanes to replace stalled ones, and give the waiting claims back once every slot
        has been stalled for :data:`~consumer.sizing.HANDBACK_SECONDS`."""
        blocked_since: float | None = None
        while not self._stopping.is_set():
            if not len(self.keeper) and not self._stalled:
                # Nothing held, nothing to count: sleep until a claim is dispatched rather
                # than waking twenty times a second in an idle worker.
                self._dispatched = trio.Event()
                await self._dispatched.wait()
            await trio.sleep(STALL_SECONDS / 2)
            now = time.monotonic()
            before = self._stalled
            lanes = self._lanes
            lanes.stalled = stalled(lanes.clocks, now)
            self._stalled = lanes.stalled + stalled(self._runners.clocks, now)
            if self._stalled < before:
                self._capacity.set()  # the claimer may lease for the slots unstalled
            if lanes.stalled:
                lanes.wake()
            waiting = len(lanes.queue) + len(self._runners.queue)
            if not waiting or self._stalled < self.config.concurrency:
                blocked_since = None
            elif blocked_since is None:
                blocked_since = now
            elif now - blocked_since >= HANDBACK_SECONDS:
                log.info("every slot is busy with long jobs: giving back %d claims", waiting)
                await self._release_unstarted()
                blocked_since = None

    # -- reporting ---------------------------------------------------------------------------

    def _report(self, finished: list[Finished]) -> None:
        """Count, log and forget settled attempts; learn the average handler time."""
        if not finished:
            return
        total = 0.0
        recording = 0.0
        ran = 0
        metrics = self.metrics
        logging_info = log.isEnabledFor(logging.INFO)
        for done in finished:
            held, outcome = done.held, done.outcome
            self.keeper.forget(held)
            if done.started:
                total += done.duration
                recording += done.recording
                ran += 1
            self.outcomes[outcome.value] += 1
            claim = held.claim
            if metrics is not None:
                left = done.lease_left_ms
                share = None if left is None else left / self.config.lease_ms
                metrics.job_settled(claim.topic, outcome, done.duration, lease_left=share)
            if logging_info:
                log.info(
                    "job %s",
                    outcome.value,
                    extra={
                        "queue": claim.queue_id,
                        "topic": claim.topic,
                        "job_id": claim.job_id,
                        "attempt": claim.attempt,
                        "outcome": outcome.value,
                        "duration": done.duration,
                        "error": describe_error(done.error) if done.error is not None else None,
                    },
                )
        if ran:
            self._handler_seconds = _average(self._handler_seconds, total / ran)
            self._job_seconds = _average(self._job_seconds, (total + recording) / ran)
        self._capacity.set()

    # -- periodic chores (cron, queue depth, purge) ---------------------------------------------

    def _purge(self, db: Database) -> None:
        keep = self.config.keep_finished_ms or 0
        while quick.purge_finished(db, older_than_ms=keep, limit=PURGE_PAGE) == PURGE_PAGE:
            if self._flags.stopping:
                return

    async def _every(self, interval: float, what: str, chore: Callable[[Database], Any]) -> None:
        """``chore(db)`` every ``interval`` seconds until stopping; failures are logged."""
        while not self._stopping.is_set():
            try:
                await self.bridge.call_db(chore)
            except quick.QuickError as error:
                if isinstance(error, quick.StorageError) and is_outage(error):
                    self.patience.failed(what, error)
                else:
                    log.warning("%s failed: %s", what, error)
            except Exception:  # a chore never ends the consumer: log and go on
                log.exception("%s failed", what)
            else:
                self.patience.succeeded(what)
            with trio.move_on_after(interval):
                await self._stopping.wait()


def _average(previous: float | None, mean: float) -> float:
    """The running average (an EWMA of weight ``EWMA_WEIGHT``) after a report's ``mean``."""
    return mean if previous is None else previous + EWMA_WEIGHT * (mean - previous)
