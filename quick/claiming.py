"""Leasing jobs: QuiCK's queue lease and job claim, and the consumer's batched claim round.

Theory of operation
-------------------
``claim`` is two transactions, as in QuiCK: a short *queue lease* committed on its
own (so other consumers see the queue is taken and move on), then one transaction
that promotes due scheduled jobs and expired leases into the ready index, leases the
best ``limit`` ready jobs, refreshes the queue's pointer and releases the queue lease.

:func:`claim_round` is the consumer's hot path: one transaction that scans the
pointer index (snapshot reads, so scanning adds no conflicts), picks due queues at
random and claims from several of them, each as :func:`claim_jobs` would, skipping
any queue whose short lease another consumer holds. A job's share of the claim cost
therefore stays flat however many tenants there are, and the separate lease
transaction, which only pays when consumers fight over one queue, is folded away.
When nothing is due the same snapshot arms a watch on the wake key.

A leased job moves to the scheduled index at its lease expiry, so a crashed
consumer's jobs become visible again by themselves. Every claim carries a fresh
token (made before the retry loop) and the last few claims' tokens and job ids are
kept on the queue lease record, so a claim retried after ``commit_unknown_result``
returns the jobs its committed try leased instead of stranding them.

Limits: a claim stops promoting and leasing once it has rewritten
:data:`CLAIM_BYTE_BUDGET` bytes of records (FoundationDB counts every byte written in
its 10 MB transaction limit and recommends far less); a job whose leased record would
outgrow the value limit is dead-lettered, never left to block its queue.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue
from keyspace.layout import POINTERS, QUEUE_LEASES, WAKE, QueueKeys, queue_keys
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, Transaction, Watch
from keyspace.retry import Tries, transactional
from quick import pointers, queue_leases
from quick.counters import Tally
from quick.errors import InvalidArgument
from quick.extensions import prefetch, resolve
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
    "ClaimRound",
    "claim_round",
    "resolve_now",
]

QUEUE_LEASE_MS = 5_000
#: Due scheduled jobs promoted into the ready index per claim.
PROMOTE_BATCH = 256
#: Record bytes one claim may rewrite (promotions and leases) before it stops: well
#: under FoundationDB's advice of 1 MB per transaction, and far under its 10 MB limit.
CLAIM_BYTE_BUDGET = 1_000_000
#: The most queues one claim round leases from.
MAX_QUEUES_PER_ROUND = 64


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = CLAIM_BYTE_BUDGET


def _promote(
    tr: Transaction, keys: QueueKeys, now: int, tally: Tally | None, budget: _Budget
) -> None:
    """Move due scheduled jobs and expired leases into the ready index."""
    rows = tr.get_range(*keys.scheduled_range(now), limit=PROMOTE_BATCH)
    if not rows:
        return
    entries = _valid_entries(tr, rows, keys.unpack_scheduled)
    records = tr.get_many([keys.job(job_id) for _, job_id in entries])
    for (key, job_id), data in zip(entries, records, strict=True):
        if budget.left <= 0:
            return
        try:
            job = None if data is None else Job.from_value(keys.queue, job_id, data)
        except CorruptValue as error:
            bury_corrupt(tr, keys, job_id, key, JobState.SCHEDULED, str(error), now)
            continue
        if job is None or job.index_key(keys) != key:
            repair_entry(tr, keys, job, key, JobState.SCHEDULED, tally)
            continue
        budget.left -= store_job(tr, keys, job, job.evolve(state=JobState.READY), tally)


def _lease_one(
    tr: Transaction,
    keys: QueueKeys,
    job: Job,
    *,
    owner: str,
    token: str,
    now: int,
    lease_ms: int,
    tally: Tally | None,
    budget: _Budget,
) -> Claim | None:
    """Lease ``job``; None (and the job dead-lettered) when its leased record cannot be stored."""
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
        return None
    budget.left -= store_job(tr, keys, job, leased, tally, value=value)
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
) -> list[Claim]:
    """Lease up to ``limit`` of the best visible jobs of ``queue`` (the second claim step),
    fewer when the queue's limits (:mod:`quick.limits`) say so."""
    keys = queue_keys(queue)
    lease = queue_leases.queue_lease(tr, queue)
    earlier = queue_leases.claimed_by(lease, token)
    if earlier is not None:
        return _reclaimed(tr, keys, earlier, token)
    own_tally = tally is None
    tally = Tally() if tally is None else tally
    budget = _Budget() if budget is None else budget
    _promote(tr, keys, now, tally, budget)
    gate = (limiter or Limiter()).gate(tr, queue, now, tally)
    if gate is not None:
        limit = min(limit, gate.room)
    claimed: list[Claim] = []
    rows = tr.get_range(*keys.ready_range(), limit=limit + 1)
    entries = _valid_entries(tr, rows[:limit], keys.unpack_ready)
    records = tr.get_many([keys.job(job_id) for _, job_id in entries])
    stopped_early = repaired = False
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
        got = _lease_one(
            tr, keys, job, owner=owner, token=token, now=now, lease_ms=lease_ms,
            tally=tally, budget=budget,
        )  # fmt: skip
        if got is not None:
            claimed.append(got)
    _notify_claimed(tr, claimed, now)
    if own_tally:
        tally.flush(tr)
    ready_left = len(rows) > limit or stopped_early
    wait_ms = gate.spend(tr, len(claimed)) if gate is not None else None
    if wait_ms is not None and ready_left:
        pointers.defer(tr, queue, now + wait_ms)  # capped: scanners move on until then
        kept = True
    else:
        # The range read saw the whole ready index (ready_left False) and took every entry
        # in it, so none is left, unless a repair just wrote one back: then look again.
        known = True if ready_left else None if repaired else False
        kept = pointers.refresh(tr, keys, now, ready_left=known)
    if kept:
        queue_leases.remember_claim(tr, queue, lease, owner, token, [c.job_id for c in claimed])
    return claimed


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


# -- the consumer's claim round --------------------------------------------------------


@dataclass(slots=True)
class ClaimRound:
    """What one claim round found: its claims, how many queues were due, where the next
    scan resumes, and (when nothing was due) a watch on the wake key with the next
    known visibility time."""

    claims: list[Claim]
    due: int
    cursor: bytes | None
    idle: tuple[Watch, int | None] | None = None


def claim_round(
    tr: Transaction,
    owner: str,
    now: int,
    *,
    limit: int,
    lease_ms: int,
    tries: Tries,
    cursor: bytes | None = None,
    scan_limit: int = 100,
    rng: random.Random | None = None,
    watch: bool = True,
) -> ClaimRound:
    """Claim up to ``limit`` jobs across the due queues, in ``tr``; see the module docstring.

    Queues are taken in random order from one page of the pointer index (resuming
    after ``cursor``); each gives at most ``limit`` divided by the number of queues
    sampled (at least one job), so a deep queue fills a batch alone and many small
    queues share one. Queues whose short lease another consumer holds are skipped.
    """
    if tries.touched:
        again = _claimed_before(tr, tries)
        if again:
            return ClaimRound(again, len(again), cursor)
    rng = rng or random.Random()
    bad: list[bytes] = []
    due = pointers.scan(tr.snapshot, now, after=cursor, limit=scan_limit, bad=bad)
    if not due and cursor is not None:
        cursor = None
        due = pointers.scan(tr.snapshot, now, limit=scan_limit, bad=bad)
    for key in bad:
        tr.clear(key)
    next_cursor = due[-1][0] if len(due) == scan_limit else None
    if not due:
        idle = (tr.watch(WAKE), pointers.next_visible(tr.snapshot)) if watch else None
        return ClaimRound([], 0, None, idle)
    queues = [queue for _, queue in due]
    picked = rng.sample(queues, min(len(queues), limit, MAX_QUEUES_PER_ROUND))
    share = max(1, limit // len(picked))
    # Every picked queue's lease and pointer in one round trip (snapshot: each is read
    # again serializably, from the transaction's read cache, only if its queue is visited).
    tr.get_many(
        [QUEUE_LEASES.pack((q,)) for q in picked] + [POINTERS.pack((q,)) for q in picked],
        snapshot=True,
    )
    claims: list[Claim] = []
    tally = Tally()
    budget = _Budget()
    limiter = Limiter()
    for queue in picked:
        room = min(share, limit - len(claims))
        if room <= 0 or budget.left <= 0:
            break
        if queue_leases.leased_by_other(tr, queue, owner, now):
            continue
        tries.touched.add(queue)
        claims.extend(
            claim_jobs(
                tr,
                queue,
                owner,
                now,
                room,
                lease_ms,
                tries.token,
                tally=tally,
                budget=budget,
                limiter=limiter,
            )
        )
    tally.flush(tr)
    for key, queue in due:
        if queue in tries.touched:
            pointers.drop_stray(tr, key, queue)
    return ClaimRound(claims, len(due), next_cursor)


def _claimed_before(tr: Transaction, tries: Tries) -> list[Claim]:
    """The claims an earlier, committed try of this round made (none if it did not commit)."""
    out: list[Claim] = []
    for queue in sorted(tries.touched):
        job_ids = queue_leases.claimed_by(queue_leases.queue_lease(tr, queue), tries.token)
        if job_ids is not None:
            out.extend(_reclaimed(tr, queue_keys(queue), job_ids, tries.token))
    return out
