"""The lease contract: claim, heartbeat, complete, fail (and snooze, discard, release).

Theory of operation
-------------------
``claim`` is two transactions, as in QuiCK: a short *queue lease* committed on its
own (so other consumers see the queue is taken and move on), then one transaction
that promotes due scheduled jobs and expired leases into the ready index, leases the
best ``limit`` ready jobs, refreshes the queue's pointer and releases the queue lease.

A leased job moves to the scheduled index at its lease expiry, so a crashed consumer's
jobs become visible again by themselves. Every lease carries a fresh token; heartbeat,
complete, fail, snooze, discard and release check the job's stored token against the
claim's and raise :class:`LeaseLost` (changing nothing) once the job has been claimed
by someone else or removed. A lease that has expired but not been re-claimed may still
be heartbeated or completed. A job put back (fail, snooze, release) loses its owner but
keeps its token until it is claimed again: the claim can no longer complete or extend
it, yet a retried put-back recognises its own earlier commit.

Retry semantics: every operation here is safe under the retry loop. The claim token
is made before the loop and recorded with the queue lease, so a claim retried after
``commit_unknown_result`` returns the jobs it already leased; a complete retried after
it finds the job's tombstone carrying its own token and succeeds.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any, Literal

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import DEAD_LETTERS, FINISHED, JOB_DIRECTORY, QueueKeys, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick import counters, pointers
from quick.errors import InvalidArgument, LeaseLost
from quick.extensions import extension_for
from quick.jobs import DEFAULT_MAX_ATTEMPTS, Claim, Job, JobState, now_ms
from quick.validation import check_name, check_positive_ms

__all__ = [
    "QUEUE_LEASE_MS",
    "PROMOTE_BATCH",
    "claim",
    "claim_jobs",
    "holds",
    "holding",
    "heartbeat",
    "complete",
    "fail",
    "snooze",
    "discard",
    "release",
    "dead_letter",
    "backoff_ms",
]

QUEUE_LEASE_MS = 5_000
#: Claims remembered on the queue lease, so a claim retried after commit_unknown_result
#: recognises its committed try even when other consumers claimed from the queue since.
RECENT_CLAIMS = 4
#: Due scheduled jobs promoted into the ready index per claim.
PROMOTE_BATCH = 256


def backoff_ms(attempt: int, base_delay_ms: int, max_delay_ms: int) -> int:
    """Capped exponential backoff with equal jitter: the delay after failed ``attempt``."""
    ceiling = min(max_delay_ms, base_delay_ms * 2 ** max(0, attempt - 1))
    half = int(ceiling) // 2
    return half + random.randint(0, int(ceiling) - half)


# -- reading and writing job records ---------------------------------------------------


def _load(tr: Transaction, keys: QueueKeys, job_id: str) -> Job | None:
    data = tr.get(keys.job(job_id))
    if data is None:
        return None
    return Job.from_value(keys.queue, job_id, data)


def _store(tr: Transaction, keys: QueueKeys, old: Job | None, new: Job) -> None:
    """Write ``new``, moving its index entry and counts from ``old``'s."""
    if old is not None:
        old_index, new_index = old.index_key(keys), new.index_key(keys)
        if old_index != new_index:
            tr.clear(old_index)
            tr.set(new_index, b"")
    else:
        tr.set(new.index_key(keys), b"")
    tr.set(keys.job(new.id), new.to_value())
    counters.move(tr, keys, old.state if old else None, new.state)


def _finish(tr: Transaction, keys: QueueKeys, job: Job, outcome: JobState, now: int) -> None:
    """Remove ``job`` and leave its tombstone in the job directory."""
    tr.clear(keys.job(job.id))
    tr.clear(job.index_key(keys))
    counters.move(tr, keys, job.state, None)
    if job.unique_key is not None:
        tr.clear(keys.unique(job.unique_key))
    tr.set(
        JOB_DIRECTORY.pack((job.id,)),
        pack_value({"q": job.queue, "s": outcome.value, "at": now, "k": job.token}),
    )
    tr.set(FINISHED.pack((now, job.id)), b"")


def _bury(tr: Transaction, keys: QueueKeys, job: Job, error: str, now: int) -> None:
    """Move ``job`` to the dead letters with ``error``."""
    tr.clear(keys.job(job.id))
    tr.clear(job.index_key(keys))
    counters.move(tr, keys, job.state, JobState.DEAD)
    if job.unique_key is not None:
        tr.clear(keys.unique(job.unique_key))
    dead = job.evolve(last_error=error, owner=None)
    tr.set(
        DEAD_LETTERS.pack((job.queue, job.id)),
        pack_value({"job": dead.to_value(), "error": error, "at": now}),
    )
    tr.set(
        JOB_DIRECTORY.pack((job.id,)),
        pack_value({"q": job.queue, "s": "dead", "at": now, "k": job.token}),
    )


def _bury_corrupt(
    tr: Transaction,
    keys: QueueKeys,
    job_id: str,
    index_key: bytes,
    state: JobState,
    error: str,
    now: int,
) -> None:
    """Move an undecodable job record to the dead letters, raw, with its decode error."""
    raw = tr.get(keys.job(job_id))
    tr.clear(keys.job(job_id))
    tr.clear(index_key)
    counters.move(tr, keys, state, JobState.DEAD)
    tr.set(
        DEAD_LETTERS.pack((keys.queue, job_id)),
        pack_value({"raw": raw, "error": f"corrupt job record: {error}", "at": now}),
    )
    tr.set(JOB_DIRECTORY.pack((job_id,)), pack_value({"q": keys.queue, "s": "dead", "at": now}))


# -- claiming ------------------------------------------------------------------------


def _promote(tr: Transaction, keys: QueueKeys, now: int) -> None:
    """Move due scheduled jobs and expired leases into the ready index."""
    for key, _ in tr.get_range(*keys.scheduled_range(now), limit=PROMOTE_BATCH):
        vis_ms, job_id = keys.unpack_scheduled(key)
        try:
            job = _load(tr, keys, job_id)
        except CorruptValue as error:
            _bury_corrupt(tr, keys, job_id, key, JobState.SCHEDULED, str(error), now)
            continue
        if job is None or job.state is JobState.READY or job.vis_ms != vis_ms:
            tr.clear(key)
            continue
        _store(tr, keys, job, job.evolve(state=JobState.READY))


def claim_jobs(
    tr: Transaction, queue: str, owner: str, now: int, limit: int, lease_ms: int, token: str
) -> list[Claim]:
    """Lease up to ``limit`` of the best visible jobs of ``queue`` (the second claim step)."""
    keys = queue_keys(queue)
    lease = pointers.queue_lease(tr, queue)
    recent = _recent_claims(lease)
    for earlier, job_ids in recent:
        if earlier == token:
            return _reclaimed(tr, keys, job_ids, token)
    _promote(tr, keys, now)
    claimed: list[Claim] = []
    rows = tr.get_range(*keys.ready_range(), limit=limit + 1)
    for key, _ in rows[:limit]:
        _, _, job_id = keys.unpack_ready(key)
        try:
            job = _load(tr, keys, job_id)
        except CorruptValue as error:
            _bury_corrupt(tr, keys, job_id, key, JobState.READY, str(error), now)
            continue
        if job is None or job.index_key(keys) != key:
            tr.clear(key)
            continue
        leased = job.evolve(
            state=JobState.LEASED,
            vis_ms=now + lease_ms,
            owner=owner,
            token=token,
            attempt=job.attempt + 1,
        )
        _store(tr, keys, job, leased)
        claimed.append(Claim.of(leased))
        if leased.extension is not None:
            _notify_claimed(tr, claimed[-1], now)
    if pointers.refresh(tr, keys, now, ready_left=len(rows) > limit):
        record = dict(lease or {})
        record.pop("c", None)
        record.pop("j", None)
        mine = [token, [c.job_id for c in claimed]]
        record.update(o=owner, u=0, r=[mine, *recent[: RECENT_CLAIMS - 1]])
        pointers.write_queue_lease(tr, queue, record)
    return claimed


def _recent_claims(lease: dict[str, Any] | None) -> list[tuple[str, list[str]]]:
    """The last few claims' ``(token, job ids)`` kept on the queue lease, newest first."""
    if lease is None:
        return []
    recent = [(token, list(ids)) for token, ids in lease.get("r") or []]
    if lease.get("c") is not None:  # the one-claim form written by earlier versions
        recent.append((lease["c"], list(lease.get("j") or [])))
    return recent


def _notify_claimed(tr: Transaction, claim: Claim, now: int) -> None:
    """Tell the job's extension it was leased; an unloadable one fails when the job runs."""
    try:
        extension = extension_for(claim.extension)
    except InvalidArgument:
        return
    if extension is not None:
        extension.on_claimed(tr, claim, now)


def _reclaimed(tr: Transaction, keys: QueueKeys, job_ids: list[str], token: str) -> list[Claim]:
    """The claims an earlier, committed try of this claim made."""
    out = []
    for job_id in job_ids:
        job = _load(tr, keys, job_id)
        if job is not None and job.token == token and job.state is JobState.LEASED:
            out.append(Claim.of(job))
    return out


@transactional
def _lease_queue(tr: Transaction, queue: str, owner: str, now: int) -> bool:
    return pointers.lease_queue(tr, queue, owner, now, QUEUE_LEASE_MS)


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
    lease_ms: int = 30_000,
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
    assert queue is not None
    now = _now(now_ms)
    if not _lease_queue(db, queue, owner, now):
        return []
    token = uuid.uuid4().hex
    return _claim_jobs(db, queue, owner, now, limit, lease_ms, token)


def _now(value: int | None) -> int:
    if value is None:
        return now_ms()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument("now_ms", f"must be milliseconds since the epoch, not {value!r}")
    return value


# -- fenced operations on a claim -------------------------------------------------------------


def _fenced(tr: Transaction, claim: Claim) -> tuple[QueueKeys, Job]:
    """The claim's job, if the claim still holds it; LeaseLost otherwise."""
    keys = queue_keys(claim.queue_id)
    try:
        job = _load(tr, keys, claim.job_id)
    except CorruptValue as error:
        raise LeaseLost(claim.job_id, f"the job record is corrupt: {error}") from None
    if job is None:
        raise LeaseLost(claim.job_id, "the job is no longer in its queue")
    if job.token != claim.token:
        raise LeaseLost(claim.job_id, f"it was claimed again (now held by {job.owner})")
    return keys, job


def _held(claim: Claim, job: Job) -> None:
    """LeaseLost when the claim put the job back on the queue (put-backs clear the owner;
    an expired lease nobody has re-claimed keeps it)."""
    if job.owner is None:
        raise LeaseLost(claim.job_id, "the job was put back on the queue")


@transactional
def _heartbeat(tr: Transaction, claim: Claim, lease_ms: int, now: int) -> Claim:
    keys, job = _fenced(tr, claim)
    _held(claim, job)
    renewed = job.evolve(state=JobState.LEASED, vis_ms=now + lease_ms)
    _store(tr, keys, job, renewed)
    if renewed.vis_ms < job.vis_ms:
        pointers.ensure_visible(tr, job.queue, renewed.vis_ms)
    return Claim.of(renewed)


def heartbeat(
    db: Database, claim: Claim, *, lease_ms: int = 30_000, now_ms: int | None = None
) -> Claim:
    """Extend the claim's lease to ``lease_ms`` from now; the renewed claim is returned.

    Raises:
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    check_positive_ms("lease_ms", lease_ms)
    return _heartbeat(db, claim, lease_ms, _now(now_ms))


def _done_as(tr: Transaction, claim: Claim, outcome: JobState) -> bool:
    """True if an earlier try of this very call already finished the job with ``outcome``."""
    data = tr.get(JOB_DIRECTORY.pack((claim.job_id,)))
    entry = unpack_value(data) if data is not None else {}
    return bool(entry.get("k") == claim.token and entry.get("s") == outcome.value)


def _holding(tr: Transaction, claim: Claim, outcome: JobState) -> tuple[QueueKeys, Job] | None:
    """The claim's job while the claim holds it; None when an earlier try of this very
    call already finished it with ``outcome``; LeaseLost otherwise."""
    try:
        keys, job = _fenced(tr, claim)
    except LeaseLost:
        if _done_as(tr, claim, outcome):
            return None
        raise
    _held(claim, job)
    return keys, job


def holding(tr: Transaction, claim: Claim) -> bool:
    """True while the claim holds its job; False when this claim already settled it
    (finished it, or put it back, in an earlier try of the caller's transaction).
    Raises LeaseLost otherwise. Lets a caller compose its own writes with a settlement
    exactly once under the retry loop."""
    keys = queue_keys(claim.queue_id)
    try:
        job = _load(tr, keys, claim.job_id)
    except CorruptValue as error:
        raise LeaseLost(claim.job_id, f"the job record is corrupt: {error}") from None
    if job is not None and job.token == claim.token:
        return job.owner is not None
    data = tr.get(JOB_DIRECTORY.pack((claim.job_id,)))
    entry = unpack_value(data) if data is not None else {}
    if entry.get("k") == claim.token and "s" in entry:
        return False
    if job is None:
        raise LeaseLost(claim.job_id, "the job is no longer in its queue")
    raise LeaseLost(claim.job_id, f"it was claimed again (now held by {job.owner})")


def holds(tr: Transaction, claim: Claim) -> bool:
    """In a transactional handler's transaction, before its writes: True while the claim
    holds the job; False when an earlier try of this transaction already completed it
    (then the handler must not run again). Raises LeaseLost otherwise."""
    return _holding(tr, claim, JobState.COMPLETED) is not None


@transactional
def _complete(tr: Transaction, claim: Claim, outcome: JobState, now: int) -> bool:
    held = _holding(tr, claim, outcome)
    if held is None:
        return False
    _finish(tr, *held, outcome, now)
    return True


def complete(db_or_tr: Database | Transaction, claim: Claim) -> bool:
    """Mark the claimed job done and remove it; joins the caller's transaction if given one.

    Returns True when this call completed the job, False when an earlier try of the
    same transaction already had (so a caller composing its own writes skips them).

    Raises:
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    return _complete(db_or_tr, claim, JobState.COMPLETED, now_ms())


def discard(db_or_tr: Database | Transaction, claim: Claim, reason: str = "") -> None:
    """Drop the claimed job without running it again, recording ``reason``."""
    _discard(db_or_tr, claim, reason, now_ms())


@transactional
def _discard(tr: Transaction, claim: Claim, reason: str, now: int) -> None:
    held = _holding(tr, claim, JobState.DISCARDED)
    if held is not None:
        keys, job = held
        _finish(tr, keys, job.evolve(last_error=reason or None), JobState.DISCARDED, now)


@transactional
def _put_back(
    tr: Transaction, claim: Claim, vis_ms: int, error: str | None, refund: bool, ready: bool
) -> None:
    keys, job = _fenced(tr, claim)
    if job.owner is None:
        return  # an earlier try of this call put it back already
    back = job.evolve(
        state=JobState.READY if ready else JobState.SCHEDULED,
        vis_ms=vis_ms,
        owner=None,
        attempt=job.attempt - 1 if refund else job.attempt,
        last_error=error if error is not None else job.last_error,
    )
    _store(tr, keys, job, back)
    pointers.ensure_visible(tr, job.queue, vis_ms)


@transactional
def _fail(
    tr: Transaction,
    claim: Claim,
    reason: str,
    now: int,
    delay: Callable[[int], int],
    max_attempts: int | None,
) -> Literal["requeued", "dead_lettered"]:
    try:
        keys, job = _fenced(tr, claim)
    except LeaseLost:
        if _done_as(tr, claim, JobState.DEAD):
            return "dead_lettered"
        raise
    if job.owner is None:
        return "requeued"  # an earlier try of this call requeued it
    allowed = job.max_attempts or max_attempts or DEFAULT_MAX_ATTEMPTS
    if job.attempt >= allowed:
        _bury(tr, keys, job, reason, now)
        return "dead_lettered"
    vis = now + delay(job.attempt)
    retry = job.evolve(state=JobState.SCHEDULED, vis_ms=vis, owner=None, last_error=reason)
    _store(tr, keys, job, retry)
    pointers.ensure_visible(tr, job.queue, vis)
    return "requeued"


def fail(
    db: Database | Transaction,
    claim: Claim,
    reason: str,
    *,
    base_delay_ms: int = 1000,
    max_delay_ms: int = 60_000,
    max_attempts: int | None = None,
    delay_ms: int | None = None,
    now_ms: int | None = None,
) -> Literal["requeued", "dead_lettered"]:
    """Record a failed attempt: retry later with backoff, or dead-letter when attempts run out.

    The delay after attempt ``n`` is ``min(max_delay_ms, base_delay_ms * 2**(n-1))``
    with equal jitter, unless ``delay_ms`` fixes it. ``max_attempts`` applies when the
    job was enqueued without one (the handler's setting); else 5.

    Raises:
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    check_positive_ms("base_delay_ms", base_delay_ms)
    check_positive_ms("max_delay_ms", max_delay_ms)
    if delay_ms is not None:
        fixed = int(delay_ms)

        def delay(attempt: int) -> int:
            return fixed

    else:

        def delay(attempt: int) -> int:
            return backoff_ms(attempt, base_delay_ms, max_delay_ms)

    return _fail(db, claim, str(reason), _now(now_ms), delay, max_attempts)


def snooze(
    db: Database | Transaction, claim: Claim, seconds: float, *, now_ms: int | None = None
) -> None:
    """Run the job again after ``seconds`` without using up an attempt."""
    vis = _now(now_ms) + round(seconds * 1000)
    _put_back(db, claim, vis, None, True, False)


def release(db: Database | Transaction, claim: Claim, *, now_ms: int | None = None) -> None:
    """Give an unstarted claim back: visible to others at once, its attempt refunded."""
    job_vis = min(claim.enqueued_ms or _now(now_ms), _now(now_ms))
    _put_back(db, claim, job_vis, None, True, True)


@transactional
def _dead_letter(tr: Transaction, claim: Claim, reason: str, now: int) -> None:
    held = _holding(tr, claim, JobState.DEAD)
    if held is not None:
        _bury(tr, *held, reason, now)


def dead_letter(
    db: Database | Transaction, claim: Claim, reason: str, *, now_ms: int | None = None
) -> None:
    """Move the claimed job straight to the dead letters (e.g. its topic has no handler)."""
    _dead_letter(db, claim, str(reason), _now(now_ms))
