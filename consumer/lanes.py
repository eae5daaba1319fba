"""Sync handlers in batches: a lane runs waiting claims one after another in a thread and
records their outcomes in one transaction from that thread.

Theory of operation
-------------------
Claims of plain ``def`` handlers (and transactional ones) wait in one deque,
:attr:`Lanes.queue`. A lane is a trio task of :class:`Lanes` that, when woken, makes one
``trio.to_thread`` call: a *slice* (:func:`run_slice`), which pops
claims and runs their handlers back to back until the deque is empty,
:data:`SETTLE_MAX` attempts are waiting to be recorded, or :data:`SLICE_SECONDS` have
passed; then it settles every attempt it ran in one transaction
(:func:`quick.outcomes.settle_batch`) and returns the outcomes to trio. So a job
costs no trio round trip of its own, and a busy consumer records a hundred jobs per
commit. A transactional handler runs inside its own transaction, which completes its
job, and so settles alone.

Lanes are woken only as needed (:mod:`consumer.sizing`): one for a backlog a single
lane clears quickly, more when the backlog times the average handler time exceeds a
slice, one per claim before that time is known, and another for each lane stalled on
a long handler, so slow (blocking) handlers still run ``concurrency`` at once while
no-op ones share one thread and one commit. Every lane slice holds one of the
consumer's ``concurrency`` slots.

Before a claim starts, lanes and async runners alike ask :func:`may_start`: a claim the
keeper found lost, or whose lease is (nearly) over by this consumer's clock, is dropped
unstarted. A consumer paused past its leases (SIGSTOP, a VM pause, a long collection)
therefore never starts jobs others have taken since, even before its keeper, which
resumes at the same moment, has found them lost.

Recording waits out a store that does not answer (an outage, a full disk): the slice
retries it until it commits (:mod:`consumer.resilience`), giving up only when the
consumer is killed or its grace period has passed (those jobs run again once their
leases expire).

Cancellation: a slice cannot be interrupted. When the consumer stops, a slice stops
taking claims and records what it ran; when it is killed, the slice is abandoned
(its thread finishes the handler in hand and records nothing: those leases expire).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from consumer.keeper import Held
from consumer.resilience import Patience
from keyspace.protocol import Database
from quick.jobs import now_ms
from quick.outcomes import Attempt, Outcome, run_attempt, settle_batch, with_result

__all__ = [
    "Finished",
    "Flags",
    "HandlerClock",
    "Lanes",
    "may_start",
    "run_slice",
    "SETTLE_MAX",
    "SLICE_SECONDS",
]

#: The most attempts one slice records in one transaction (the group commit's size).
SETTLE_MAX = 128
#: How long a slice runs handlers before it records them and reports back, so results
#: (and the freed capacity) reach the consumer promptly even under slow handlers.
SLICE_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class Finished:
    """One attempt's end, reported back to the consumer (``started`` False for a claim
    dropped unstarted by :func:`may_start`). ``recording`` is the attempt's share of the
    seconds its slot spent recording it with the others of its slice (0 where the slot
    was free before the recording: the async runners' group committer);
    ``lease_left_ms`` how much of its lease the claim had left as its handler started
    (None: not started)."""

    held: Held
    outcome: Outcome
    duration: float
    error: BaseException | None = None
    started: bool = True
    recording: float = 0.0
    lease_left_ms: int | None = None


def may_start(held: Held, now: int, margin_ms: int) -> bool:
    """Whether a waiting claim may start its handler at ``now`` (this consumer's clock):
    the keeper has not found it lost, and more than ``margin_ms`` of its lease is left.

    The margin covers the clocks of other consumers running a little ahead, and the
    keeper's next renewal: a claim the keeper looks after never comes near it.
    """
    return not held.lost and held.claim.lease_until_ms - now > margin_ms


class HandlerClock:
    """When the handler a lane (or an async runner) is running began, by
    ``time.monotonic()``; None between handlers. Written by its own thread or task and
    read by the consumer's stall watch (:mod:`consumer.sizing`)."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None


class Flags:
    """What a slice checks between handlers (plain attributes: read across threads)."""

    __slots__ = (
        "stopping",
        "killed",
        "start_margin_ms",
        "low_water",
        "on_low_water",
        "on_settling",
        "patience",
    )

    def __init__(self, start_margin_ms: int = 0) -> None:
        self.stopping = False
        self.killed = False
        #: A claim starts only with more of its lease left than this (see :func:`may_start`).
        self.start_margin_ms = start_margin_ms
        #: When the deque shrinks to this many claims, ``on_low_water`` is called
        #: (thread-safe), so the claimer leases the next batch while this one runs.
        self.low_water = 0
        self.on_low_water: Callable[[], None] = lambda: None
        #: Called (thread-safe) when a slice starts recording while claims still wait,
        #: so another lane runs them during the commit (a round trip on FoundationDB).
        self.on_settling: Callable[[], None] = lambda: None
        #: How recording waits out a store that does not answer.
        self.patience = Patience()


def run_slice(
    db: Database, waiting: deque[Held], flags: Flags, clock: HandlerClock
) -> list[Finished]:
    """Run waiting claims' handlers in this thread, then record them; see the module docstring.
    ``clock`` tells the consumer how long the handler in hand has run."""
    finished: list[Finished] = []
    attempts: list[Attempt] = []
    ran: list[tuple[Held, float, int]] = []
    deadline = time.monotonic() + SLICE_SECONDS
    while not flags.stopping and len(attempts) < SETTLE_MAX:
        try:
            held = waiting.popleft()
        except IndexError:
            break
        if len(waiting) == flags.low_water:
            flags.on_low_water()
        now = now_ms()
        if not may_start(held, now, flags.start_margin_ms):
            held.settled = True
            finished.append(Finished(held, Outcome.LEASE_LOST, 0.0, started=False))
            continue
        left = held.claim.lease_until_ms - now
        clock.since = time.monotonic()
        started = time.perf_counter()
        try:
            attempt = _run(db, held)
        finally:
            clock.since = None
        duration = time.perf_counter() - started
        if isinstance(attempt, Outcome):
            held.settled = True
            finished.append(Finished(held, attempt, duration, lease_left_ms=left))
        else:
            attempts.append(with_result(attempt))  # an unstorable result fails it, reported
            ran.append((held, duration, left))
        if time.monotonic() > deadline:
            break
    if flags.killed:
        return []
    if waiting and not flags.stopping:
        flags.on_settling()
    recording = time.perf_counter()
    outcomes = flags.patience.retry_blocking("recording attempts", settle_batch, db, attempts)
    share = (time.perf_counter() - recording) / len(attempts) if attempts else 0.0
    if outcomes is None:  # given up (killed, or past the grace): the leases expire
        outcomes = [Outcome.LEASE_LOST] * len(attempts)
    for (held, duration, left), attempt, outcome in zip(ran, attempts, outcomes, strict=True):
        held.settled = True  # at once: a renewal retrying now drops it (consumer.keeper)
        finished.append(
            Finished(held, outcome, duration, attempt.error, recording=share, lease_left_ms=left)
        )
    return finished


def _run(db: Database, held: Held) -> Attempt | Outcome:
    """Run one claim's handler; the attempt to record, or the outcome when already recorded."""
    return run_attempt(db, held.claim, held.config, signals=held.signals)


class Lanes:
    """The thread lanes of one consumer: the deque of sync claims, and the trio tasks that
    run it a slice at a time, as many at once as the backlog needs.

    Args:
        db: the store the handlers and their settlements run on.
        slots: the consumer's ``concurrency`` slots, shared with the async runners; a
            slice holds one while its thread runs.
        flags: what slices check between handlers; the consumer sets ``stopping``.
        report: the consumer's account of settled attempts (counts, logs, metrics).
        wanted: the lanes the backlog needs, given the claims waiting and the lanes
            stalled (the consumer's sizing policy, :func:`consumer.sizing.lanes_wanted`).
    """

    def __init__(
        self,
        db: Database,
        slots: trio.CapacityLimiter,
        flags: Flags,
        report: Callable[[list[Finished]], None],
        wanted: Callable[[int, int], int],
    ) -> None:
        self.db = db
        self.queue: deque[Held] = deque()
        self.flags = flags
        #: Each lane's handler clock, read by the consumer's stall watch.
        self.clocks: list[HandlerClock] = []
        #: Lanes stalled on a long handler, as the stall watch last counted them.
        self.stalled = 0
        self._slots = slots
        self._report = report
        self._wanted = wanted
        self._idle: list[trio.Event] = []
        self._running = 0
        self._token: trio.lowlevel.TrioToken | None = None

    def start(self, nursery: trio.Nursery, count: int) -> None:
        """Start ``count`` lanes in ``nursery``. A lane returns once ``flags.stopping`` is
        set and the deque is empty; a slice about to record wakes another lane for the
        claims still waiting."""
        self._token = trio.lowlevel.current_trio_token()
        self.flags.on_settling = self._add_threadsafe
        for _ in range(count):
            nursery.start_soon(self._lane)

    def wake(self) -> None:
        """Wake as many lanes as the backlog needs (see :mod:`consumer.sizing`)."""
        wanted = self._wanted(len(self.queue), self.stalled)
        serving = self._running - self.stalled
        for _ in range(min(wanted - serving, len(self._idle))):
            self._idle.pop().set()

    def wake_all(self) -> None:
        """Wake every idle lane (to find the consumer stopping)."""
        while self._idle:
            self._idle.pop().set()

    def _add_threadsafe(self) -> None:
        """Wake one more idle lane (from a lane thread about to commit)."""
        token = self._token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._add)

    def _add(self) -> None:
        if self.queue and self._idle:
            self._idle.pop().set()

    async def _lane(self) -> None:
        flags = self.flags
        clock = HandlerClock()
        self.clocks.append(clock)
        while True:
            if not self.queue or flags.stopping:
                if flags.stopping and not self.queue:
                    return
                wake = trio.Event()
                self._idle.append(wake)
                await wake.wait()
                continue
            self._running += 1
            try:
                finished = await trio.to_thread.run_sync(
                    run_slice,
                    self.db,
                    self.queue,
                    flags,
                    clock,
                    limiter=self._slots,
                    abandon_on_cancel=True,
                )
            finally:
                self._running -= 1
            self._report(finished)
            self.wake()
