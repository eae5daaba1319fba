"""Every claim a consumer holds, and the one task that keeps their leases alive.

Theory of operation
-------------------
A claim is registered here from the moment it is leased until its attempt is
settled, whether it is waiting for a worker, running, or waiting to be recorded.
One keeper task per consumer wakes every third of the lease and renews, in one
transaction per :data:`RENEW_PAGE` claims, every claim whose lease has less than two
thirds left (so short jobs, settled long before, never cost a heartbeat). A claim
found lost is marked: a waiting one is skipped, a running async handler is
cancelled through its scope, and a running sync handler finishes but its outcome is
discarded (a thread cannot be interrupted). A claim found already settled by this
consumer is left alone: its worker is about to report it.

A renewal conflicts (1020) whenever this consumer's own worker settles one of its claims
between the renewal's reads and its commit: under load a third to a half of them, with
fast jobs (docs/benchmarks.md, stop 25). Its retry therefore renews only what still
needs it: a claim whose attempt was recorded meanwhile (:attr:`Held.settled`, set by the
thread that recorded it, right after the commit) or that an earlier try found settled or
lost is dropped, not read again; and each try renews from its own time (the first try's
``now`` plus the time spent since), so a renewal retried for a second still gives the
full lease.

The renewal reads each job's record anyway, so it also carries what a running handler
and ``quick.cancel`` tell each other, at no extra transaction: a job found with the
cancel mark is signalled (:attr:`Held.signals`: ``meta.cancelled()`` turns true, and
a running async handler is cancelled through its scope; its attempt then ends the job
as cancelled), and a claim whose handler recorded progress since the last renewal
(``meta.progress``) is renewed with the next round even when its lease is young, the
progress written into its record by the same write. Nothing of this costs anything
while no job is cancelled and no handler records progress.

So that a cancel need not wait for the next renewal (up to two thirds of the lease),
the keeper also watches the store's cancel counter, which ``quick.cancel`` bumps when
it marks a running job: when it moves, one read-only transaction per page of held
claims looks for marks (:meth:`LeaseKeeper.watch_cancels`). That is one watch per
consumer, and a read per cancel, never a transaction per job.

A renewal the store does not answer (an outage, a full disk) ends nothing: the keeper
retries it with backoff (:class:`consumer.resilience.Patience`), never waiting longer
than its interval, each try with the time of that try, so claims stay held for as long
as the store lets them; once it answers, claims another consumer took meanwhile come
back lost and are cancelled as above.

Cancellation: the keeper is a child of the consumer's nursery and stops with it; a
renewal running in its thread is abandoned (see :mod:`consumer.bridge`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable

import trio

from consumer.bridge import Bridge
from consumer.resilience import Patience
from keyspace.protocol import Database, Transaction, Watch
from keyspace.retry import watch_retry_pause
from quick.app import JobConfig
from quick.jobs import Claim, now_ms
from quick.leases import cancel_marks, heartbeat_all, watch_cancels
from quick.progress import JobSignals, Progress
from quick.settlement import Outcome

__all__ = ["Held", "LeaseKeeper", "RENEW_PAGE"]

log = logging.getLogger("quick.consumer")

#: Claims renewed per transaction: bounded, so a renewal stays far under the 5-second
#: transaction lifetime and the 10 MB size limit on FoundationDB.
RENEW_PAGE = 500


class Held:
    """One claim this consumer holds: its current lease, its handler and its fate."""

    __slots__ = ("claim", "config", "lost", "scope", "settled", "signals")

    def __init__(self, claim: Claim, config: JobConfig | None) -> None:
        self.claim = claim
        self.config = config
        #: Set by the keeper when another consumer took the job or it vanished.
        self.lost = False
        #: Set (from any thread) once nothing more is recorded for this claim: its attempt
        #: was recorded (or given up), or it was dropped unstarted. Its lease is renewed
        #: no more, and a renewal running meanwhile drops it when it retries.
        self.settled = False
        #: The cancel scope of a running async handler, cancelled when the lease is lost
        #: or the job is cancelled.
        self.scope: trio.CancelScope | None = None
        #: Shared with the handler's ``meta``: the cancel flag and its latest progress.
        self.signals = JobSignals()
        if claim.cancel_requested:
            self.signals.cancelled = True

    def cancel(self) -> None:
        """The job was cancelled: tell its handler (and cancel it, when async)."""
        self.signals.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class LeaseKeeper:
    """The registry of held claims and their lease renewals."""

    def __init__(self, bridge: Bridge, lease_ms: int, *, patience: Patience | None = None) -> None:
        self.bridge = bridge
        self.lease_ms = lease_ms
        self.patience = patience or Patience()
        self.held: dict[str, Held] = {}

    def __len__(self) -> int:
        return len(self.held)

    def add(self, held: Iterable[Held]) -> None:
        for item in held:
            self.held[item.claim.job_id] = item

    def forget(self, held: Held) -> None:
        held.settled = True
        self.held.pop(held.claim.job_id, None)

    async def run(self) -> None:
        """Renew leases every third of the lease, until cancelled; outages are retried."""
        interval = self.lease_ms / 3000
        while True:
            await trio.sleep(interval)
            await self.patience.retry("lease renewal", self._renew_now, cap=interval)

    async def watch_cancels(self) -> None:
        """Look for cancel marks on held claims whenever ``quick.cancel`` marks a running
        job, until cancelled. The watch is armed before each look, so a cancel between
        a look and the next wait fires it; a failed watch is retried after a pause."""
        failures = 0
        looked = False
        while True:
            watch = await self.patience.retry("cancel watch", self.bridge.call_db, _arm)
            if watch is None:  # given up: the consumer is stopping
                return
            try:
                if looked:
                    await self.patience.retry("cancel check", self.check_cancels)
                looked = True
                await trio.to_thread.run_sync(watch.wait, None, abandon_on_cancel=True)
            finally:
                watch.cancel()
            failures = failures + 1 if watch.failed else 0
            await trio.sleep(watch_retry_pause(failures, random.random()))

    async def check_cancels(self) -> None:
        """Signal every held claim whose job carries the cancel mark (reads only)."""
        looking = [h for h in self.held.values() if not h.lost and not h.signals.cancelled]
        for start in range(0, len(looking), RENEW_PAGE):
            page = looking[start : start + RENEW_PAGE]
            claims = [h.claim for h in page]
            marks = await self.bridge.call_db(_marks, claims)
            for held, marked in zip(page, marks, strict=True):
                if marked and held.claim.job_id in self.held:
                    held.cancel()

    async def _renew_now(self) -> None:
        await self.renew(now_ms())

    async def renew(self, now: int) -> None:
        """Renew every held claim with less than two thirds of its lease left, or with
        progress to write; signal the cancelled ones."""
        due = []
        for h in self.held.values():
            if h.lost or h.settled:
                continue
            unwritten = h.signals.unwritten()
            if unwritten is not None or h.claim.lease_until_ms - now < self.lease_ms * 2 // 3:
                due.append((h, unwritten))
        for start in range(0, len(due), RENEW_PAGE):
            page = due[start : start + RENEW_PAGE]
            helds = [h for h, _ in page]
            latest = [None if u is None else u[1] for _, u in page]
            progress = latest if any(latest) else None
            answers = await self.bridge.call_db(_renew, helds, self.lease_ms, now, progress)
            for (held, unwritten), answer in zip(page, answers, strict=True):
                if isinstance(answer, Claim):
                    held.claim = answer
                    if unwritten is not None:
                        held.signals.written(unwritten[0])
                    if answer.cancel_requested and not held.signals.cancelled:
                        held.cancel()
                elif answer is Outcome.LEASE_LOST and held.claim.job_id in self.held:
                    held.lost = True
                    if held.scope is not None:
                        held.scope.cancel()


def _arm(db: Database) -> Watch:
    return db.transact(watch_cancels)


def _marks(db: Database, claims: list[Claim]) -> list[bool]:
    return db.transact(cancel_marks, claims)


def _renew(
    db: Database,
    page: list[Held],
    lease_ms: int,
    now: int,
    progress: list[Progress | None] | None,
) -> list[Claim | Outcome | None]:
    """Renew ``page`` in one transaction: per claim, the renewed claim, how it stands
    when it is not held (:func:`quick.leases.heartbeat_all`), or None when it was
    dropped before the try that committed (settled meanwhile by this consumer).

    Retry semantics: each try renews only the claims still held and unsettled (see the
    module docstring), from ``now`` plus the time the earlier tries took. A claim an
    earlier try found not held keeps that answer: a claim never holds its job again.
    """
    started = time.monotonic()
    known: dict[int, Outcome] = {}

    def body(tr: Transaction) -> list[Claim | Outcome | None]:
        at = now + round((time.monotonic() - started) * 1000)
        todo = [i for i, h in enumerate(page) if i not in known and not (h.settled or h.lost)]
        out: list[Claim | Outcome | None] = [known.get(i) for i in range(len(page))]
        if not todo:
            return out
        claims = [page[i].claim for i in todo]
        latest = None if progress is None else [progress[i] for i in todo]
        for i, answer in zip(todo, heartbeat_all(tr, claims, lease_ms, at, latest), strict=True):
            out[i] = answer
            if not isinstance(answer, Claim):
                known[i] = answer
        return out

    return db.transact(body)
