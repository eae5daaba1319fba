"""Leasing jobs: QuiCK's queue lease and job claim (:func:`claim`, :func:`claim_jobs`).

Theory of operation
-------------------
``claim`` is two transactions, as in QuiCK: a short *queue lease* committed on its
own (so other consumers see the queue is taken and move on), then one transaction
that promotes due scheduled jobs and expired leases into the ready index, leases the
best ``limit`` ready jobs, refreshes the queue's pointer and releases the queue lease.

:func:`quick.claim_rounds.claim_round` is the consumer's hot path: one transaction that scans the
pointer index (snapshot reads, so scanning adds no conflicts), picks due queues at
random and claims from several of them, each as :func:`claim_jobs` would, skipping
any queue whose short lease another consumer holds. A job's share of the claim cost
therefore stays flat however many tenants there are, and the separate lease
transaction, which only pays when consumers fight over one queue, is folded away.
When nothing is due the same snapshot arms a watch on the wake key.

A leased job moves to the scheduled index at its lease expiry, so a crashed
consumer's jobs become visible again by themselves. Every claim carries a fresh
token (made before the retry loop), and a claim retried after ``commit_unknown_result``
returns the jobs its committed try leased instead of stranding them: :func:`claim`
keeps the last few claims' tokens and job ids on the queue lease record; a claim
round tells its :class:`~keyspace.retry.Tries` (made before the loop too) the job ids
each try leases, which spares it a write per queue; the retry loop keeps those of a try
whose commit result is unknown, and the retry takes back those that still carry its
token. A retry after a plain conflict reads none of them: that try committed nothing,
and reading jobs another consumer won would only make the retry conflict with that
consumer's renewals and settlements.

Limits: a claim stops promoting and leasing once it has rewritten
:data:`CLAIM_BYTE_BUDGET` bytes of records (FoundationDB counts every byte written in
its 10 MB transaction limit and recommends far less); a job whose leased record would
outgrow the value limit is dead-lettered, never left to block its queue.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue
from keyspace.layout import QueueKeys, queue_keys
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, KeyValue, Transaction
from keyspace.retry import Tries, transactional
from quick import pointers, queue_leases
from quick.counters import Tally
from quick.errors import InvalidArgument
from quick.extensions import prefetch, resolve
from quick.followers import job_finished
from quick.jobs import DEFAULT_LEASE_MS, Claim, Job, JobState, now_ms
from quick.limits import Limiter
from quick.records import (
    bury_corrupt,
    bury_job,
    drop_entry,
    load_job,
    repair_entry,
    store_job,
)
from quick.validation import check_delay_ms, check_name, check_positive_ms

__all__ = [
    "QUEUE_LEASE_MS",
    "PROMOTE_BATCH",
    "CLAIM_BYTE_BUDGET",
    "claim",
    "claim_jobs",
    "look_range",
    "resolve_now",
]

QUEUE_LEASE_MS = 5_000
#: Due scheduled jobs promoted into the ready index per claim.
PROMOTE_BATCH = 256
#: Record bytes one claim may rewrite (promotions and leases) before it stops: well
#: under FoundationDB's advice of 1 MB per transaction, and far under its 10 MB limit.
CLAIM_BYTE_BUDGET = 1_000_000


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = CLAIM_BYTE_BUDGET


def _promote(
    tr: Transaction, keys: QueueKeys, now: int, tally: Tally | None, budget: _Budget
) -> bool:
    """Move due scheduled jobs and expired leases into the ready index; False when none
    was due."""
    rows = tr.get_range(*keys.scheduled_range(now), limit=PROMOTE_BATCH)
    if not rows:
        return False
    entries = _valid_entries(tr, rows, keys.unpack_scheduled)
    records = tr.get_many([keys.job(job_id) for _, job_id in entries])
    for (key, job_id), data in zip(entries, records, strict=True):
        if budget.left <= 0:
            break
        try:
            job = None if data is None else Job.from_value(keys.queue, job_id, data)
        except CorruptValue as error:
            bury_corrupt(tr, keys, job_id, key, JobState.SCHEDULED, str(error), now)
            continue
        if job is None or job.index_key(keys) != key:
            repair_entry(tr, keys, job, key, JobState.SCHEDULED, tally)
            continue
        budget.left -= store_job(tr, keys, job, job.evolve(state=JobState.READY), tally)
    return True


def _lease_one(
    tr: Transaction,
    keys: QueueKeys,
    job: Job,
    index: bytes,
    *,
    owner: str,
    token: str,
    now: int,
    lease_ms: int,
    tally: Tally | None,
    budget: _Budget,
) -> Claim | None:
    """Lease ``job``, whose ready-index entry is ``index``; None (and the job dead-lettered)
    when its leased record cannot be stored."""
    leased = job.evolve(
        state=JobState.LEASED,
        vis_ms=now + lease_ms,
        owner=owner,
        token=token,
        attempt=job.attempt + 1,
    )
    value = leased.to_value()
    if len(value) > VALUE_LIMIT:
        reason = (
            f"the job record would grow to {len(value)} bytes when leased, "
            f"over the {VALUE_LIMIT}-byte value limit"
        )
        bury_job(tr, keys, job, reason, now, tally)
        if job.batch is not None or job.has_dependents:
            job_finished(tr, job, JobState.DEAD, now)
        return None
    budget.left -= store_job(tr, keys, job, leased, tally, value=value, old_index=index)
    return Claim.of(leased)


def claim_jobs(
    tr: Transaction,
    queue: str,
    owner: str,
    now: int,
    limit: int,
    lease_ms: int,
    token: str,
    *,
    tally: Tally | None = None,
    budget: Any = None,
    limiter: Limiter | None = None,
    tries: Tries | None = None,
    look_rows: list[KeyValue] | None = None,
) -> list[Claim]:
    """Lease up to ``limit`` of the best visible jobs of ``queue`` (the second claim step),
    fewer when the queue's limits (:mod:`quick.limits`) say so.

    The claim is remembered on the queue lease record, for a retry after an unknown
    commit result to find; given ``tries`` (a claim round's), only in ``tries`` instead,
    which spares the round a write per queue. ``look_rows``: the rows of
    :func:`look_range` (with a limit of at least ``limit + 1``) that a caller claiming
    from several queues read ahead for all of them at once, as snapshot reads, and that
    are still current (this transaction wrote nothing to the queue's indexes since);
    the claim adds their read conflict as its own read would.
    """
    keys = queue_keys(queue)
    # A claim round (``tries``) has read the queue lease itself (it skips queues others
    # hold) and never remembers its claims there: it need not read it again.
    lease = None if tries is not None else queue_leases.queue_lease(tr, queue)
    earlier = queue_leases.claimed_by(lease, token)
    if earlier is not None:
        return _reclaimed(tr, keys, earlier, token)
    own_tally = tally is None
    tally = Tally() if tally is None else tally
    budget = _Budget() if budget is None else budget
    look = _look(tr, keys, limit, look_rows)
    # Promote only when the look did not reach the scheduled index (the ready one had
    # more than a batch) or found a due entry there: a queue of one ready job costs one read.
    due = look.scheduled == pointers.UNREAD or (
        look.scheduled is not None and look.scheduled <= now
    )
    if due and _promote(tr, keys, now, tally, budget):
        look = _look(tr, keys, limit)
    limiter = limiter or Limiter()
    gate = limiter.gate(tr, queue, now, tally)  # after promotion: it counts leases
    if gate is not None:
        limit = min(limit, gate.room)
    claimed: list[Claim] = []
    entries = _valid_entries(tr, look.ready[:limit], keys.unpack_ready)
    records = tr.get_many([keys.job(job_id) for _, job_id in entries])
    stopped_early = repaired = False
    parked: list[int] = []  # when jobs parked by their keyed limits become visible again
    for (key, job_id), data in zip(entries, records, strict=True):
        if budget.left <= 0 and claimed:
            stopped_early = True
            break
        try:
            job = None if data is None else Job.from_value(queue, job_id, data)
        except CorruptValue as error:
            bury_corrupt(tr, keys, job_id, key, JobState.READY, str(error), now)
            continue
        if job is None or job.index_key(keys) != key:
            repair_entry(tr, keys, job, key, JobState.READY, tally)
            repaired = True
            continue
        if job.limit_keys:  # keyed limits (quick.key_limits): wait, parked, while exhausted
            wait = limiter.keys.admit(tr, job, now, tally)
            if wait is not None:
                waiting = job.evolve(state=JobState.SCHEDULED, vis_ms=now + wait)
                budget.left -= store_job(tr, keys, job, waiting, tally)
                parked.append(now + wait)
                continue
        got = _lease_one(
            tr, keys, job, key, owner=owner, token=token, now=now, lease_ms=lease_ms,
            tally=tally, budget=budget,
        )  # fmt: skip
        if got is not None:
            claimed.append(got)
    _notify_claimed(tr, claimed, now)
    if own_tally:
        tally.flush(tr)
    ready_left = len(look.ready) > limit or stopped_early
    wait_ms = gate.spend(tr, len(claimed)) if gate is not None else None
    if wait_ms is not None and ready_left:
        pointers.defer(tr, queue, now + wait_ms)  # capped: scanners move on until then
        kept = True
    elif repaired:  # a repair may have written an entry back: look again
        kept = pointers.refresh(tr, keys, now, ready_left=True if ready_left else None)
    else:
        # The read saw the whole ready index (unless ready_left) and, past it, the first
        # scheduled entry; the jobs just leased joined the scheduled index at their expiry,
        # and the jobs parked by keyed limits at the end of their wait.
        soonest = look.scheduled
        draining = False
        later = [c.lease_until_ms for c in claimed] + parked
        if any(c.extension is not None for c in claimed):
            soonest = pointers.UNREAD  # its hook may have written to the queue: read again
        elif later and soonest != pointers.UNREAD:
            draining = soonest is None and not ready_left and not parked
            soonest = min(later) if soonest is None else min(soonest, *later)
        kept = pointers.refresh(
            tr, keys, now, ready_left=ready_left, scheduled=soonest, draining=draining
        )
    if tries is not None:
        tries.did_more({c.job_id: queue for c in claimed})
    elif kept:
        queue_leases.remember_claim(tr, queue, lease, owner, token, [c.job_id for c in claimed])
    return claimed


@dataclass(slots=True)
class _Look:
    """What one read of a queue's job indexes saw: the first ready entries and, when they
    were all of them, the visibility of the first scheduled entry (None: there is none;
    :data:`quick.pointers.UNREAD`: the read stopped before it)."""

    ready: list[tuple[bytes, bytes]]
    scheduled: int | None  # pointers.UNREAD when not reached


def look_range(keys: QueueKeys, limit: int) -> tuple[bytes, bytes, int]:
    """``(begin, end, row limit)`` of the one range read with which a claim of up to
    ``limit`` jobs looks at ``keys.queue``: its ready index and, past it, its scheduled
    index (see :func:`_look`)."""
    begin, _ = keys.ready_range()
    _, end = keys.scheduled_range()
    return begin, end, limit + 1


def _look(
    tr: Transaction, keys: QueueKeys, limit: int, rows: list[KeyValue] | None = None
) -> _Look:
    """Read up to ``limit + 1`` ready entries of ``keys.queue`` and, when fewer, the first
    scheduled entry after them, in one range read (the ready index sorts just before
    the scheduled index); ``rows``: that read made ahead, perhaps with a larger limit
    (cut to this one's, it is the same read).

    The read is a snapshot read with the read conflict added by hand, so that it covers
    what a serializable read of the ready index (up to ``limit + 1`` entries) would, and
    the scheduled index up to its first entry: a producer or settlement writing past that
    entry, or settling the job it belongs to, does not conflict with the claim.
    """
    begin, ready_end = keys.ready_range()
    sched_begin, end = keys.scheduled_range()
    most = limit + 1  # as look_range says
    rows = tr.snapshot.get_range(begin, end, limit=most) if rows is None else rows[:most]
    ready = [row for row in rows if row[0] < ready_end]
    first = next((key for key, _ in rows if key >= sched_begin), None)
    scheduled: int | None = pointers.UNREAD
    if first is not None:
        # Up to the first scheduled entry, not including it: its removal (a settled
        # lease) only leaves the pointer early, which is allowed; an entry written
        # before it would leave the pointer late, and conflicts.
        covered = first
        # An entry that does not unpack stays UNREAD: pointers.refresh reads it again.
        with contextlib.suppress(ValueError):
            scheduled = _unpack(keys.unpack_scheduled, first)[0]
    elif len(rows) > limit:
        covered = rows[-1][0] + b"\x00"
    else:
        covered, scheduled = end, None
    tr.add_read_conflict_range(begin, covered)
    return _Look(ready, scheduled)


def _valid_entries(
    tr: Transaction, rows: list[tuple[bytes, bytes]], unpack: Any
) -> list[tuple[bytes, str]]:
    """``(index key, job id)`` of the entries that unpack; the others are cleared and named."""
    out = []
    for key, _ in rows:
        try:
            out.append((key, _unpack(unpack, key)[-1]))
        except ValueError:
            drop_entry(tr, key)
    return out


def _unpack(unpack: Any, key: bytes) -> tuple[Any, ...]:
    """An index key's fields, the last a job id string; ValueError when it is not one."""
    try:
        fields: tuple[Any, ...] = unpack(key)
    except Exception as error:  # fdb.tuple raises several kinds on foreign bytes
        raise ValueError(str(error)) from error
    if not isinstance(fields[-1], str) or not all(
        isinstance(f, int) and not isinstance(f, bool) for f in fields[:-1]
    ):
        raise ValueError(f"index key fields {fields!r}")
    return fields


def _notify_claimed(tr: Transaction, claims: list[Claim], now: int) -> None:
    """Tell each job's extension it was leased (an unloadable one fails when the job
    settles), after letting the extensions read what they need for all of them at once."""
    extended = [claim for claim in claims if claim.extension is not None]
    if not extended:
        return
    prefetch(tr, extended, settling=False)
    for claim in extended:
        extension = resolve(claim.extension)
        if extension is not None:
            extension.on_claimed(tr, claim, now)


def _reclaimed(tr: Transaction, keys: QueueKeys, job_ids: list[str], token: str) -> list[Claim]:
    """The claims an earlier, committed try of this claim made."""
    out = []
    for job_id in job_ids:
        try:
            job = load_job(tr, keys, job_id)
        except CorruptValue:
            continue
        if job is not None and job.token == token and job.state is JobState.LEASED:
            out.append(Claim.of(job))
    return out


@transactional
def _lease_queue(tr: Transaction, queue: str, owner: str, now: int) -> bool:
    return queue_leases.lease_queue(tr, queue, owner, now, QUEUE_LEASE_MS)


@transactional
def _claim_jobs(
    tr: Transaction, queue: str, owner: str, now: int, limit: int, lease_ms: int, token: str
) -> list[Claim]:
    return claim_jobs(tr, queue, owner, now, limit, lease_ms, token)


def claim(
    db: Database,
    queue_id: str,
    owner: str,
    *,
    limit: int = 1,
    lease_ms: int = DEFAULT_LEASE_MS,
    now_ms: int | None = None,
) -> list[Claim]:
    """Lease up to ``limit`` visible jobs of ``queue_id`` for ``owner``, best first.

    Returns an empty list when nothing is visible or another consumer holds the
    queue's short lease right now.

    Args:
        db: the database (a claim is two transactions of its own).
        queue_id: the queue to claim from.
        owner: who holds the leases (a consumer id), recorded on each job.
        limit: the most jobs to lease.
        lease_ms: how long the leases last unless heartbeated.
        now_ms: the clock, for tests and other runtimes; defaults to the wall clock.
    """
    queue = check_name("queue_id", queue_id)
    check_name("owner", owner)
    check_positive_ms("limit", limit)
    check_positive_ms("lease_ms", lease_ms)
    check_delay_ms("lease_ms", lease_ms)
    assert queue is not None
    now = resolve_now(now_ms)
    if not _lease_queue(db, queue, owner, now):
        return []
    token = uuid.uuid4().hex
    return _claim_jobs(db, queue, owner, now, limit, lease_ms, token)


def resolve_now(value: int | None) -> int:
    """``value`` checked as milliseconds since the epoch, or the wall clock when None."""
    if value is None:
        return now_ms()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument("now_ms", f"must be milliseconds since the epoch, not {value!r}")
    return value
