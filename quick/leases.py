"""What a claim may do with its job: heartbeat, complete, fail, snooze, discard, release.

Every operation first asks :func:`quick.fencing.standing` whether the claim still holds
its job, and changes nothing (raising :class:`LeaseLost`) once the job was claimed by
someone else or removed. A job put back (fail, snooze, release) loses its owner but
keeps its token until it is claimed again: the claim can no longer complete or extend
it, yet a retried put-back recognises its own earlier commit.

Retry semantics: every operation here is safe under the retry loop. A complete
retried after ``commit_unknown_result`` finds the job's tombstone carrying its own
token and outcome and answers as the committed try did. The ``*_in`` functions take
a :class:`~quick.counters.Tally` so that a batch settles many claims in one
transaction with one counter write per queue and state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from keyspace.layout import queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick import pointers
from quick.claiming import resolve_now
from quick.counters import Tally
from quick.errors import LeaseLost
from quick.fencing import Standing, Status, held_job, standing, standings
from quick.jobs import Claim, Job, JobState
from quick.records import bury_job, finish_job, store_job, truncate_error
from quick.retrying import DEFAULT_BASE_DELAY_MS, DEFAULT_MAX_DELAY_MS, attempt_limit, backoff_ms
from quick.validation import check_claim, check_delay_ms, check_positive_ms

__all__ = [
    "heartbeat",
    "heartbeat_in",
    "complete",
    "complete_in",
    "fail",
    "fail_in",
    "snooze",
    "snooze_in",
    "discard",
    "discard_in",
    "release",
    "release_in",
    "dead_letter",
    "dead_letter_in",
    "release_all",
    "heartbeat_all",
]

FailResult = Literal["requeued", "dead_lettered"]


# -- heartbeat ---------------------------------------------------------------------


def heartbeat_in(tr: Transaction, claim: Claim, lease_ms: int, now: int) -> Claim:
    """Extend the claim's lease in ``tr``; LeaseLost (nothing changed) unless it is held."""
    keys, job = held_job(tr, claim)
    renewed = job.evolve(state=JobState.LEASED, vis_ms=now + lease_ms)
    store_job(tr, keys, job, renewed)
    if renewed.vis_ms < job.vis_ms:
        pointers.ensure_visible(tr, job.queue, renewed.vis_ms)
    return Claim.of(renewed)


@transactional
def _heartbeat(tr: Transaction, claim: Claim, lease_ms: int, now: int) -> Claim:
    return heartbeat_in(tr, claim, lease_ms, now)


def heartbeat(
    db: Database, claim: Claim, *, lease_ms: int = 30_000, now_ms: int | None = None
) -> Claim:
    """Extend the claim's lease to ``lease_ms`` from now; the renewed claim is returned.

    Raises:
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    check_claim(claim)
    check_positive_ms("lease_ms", lease_ms)
    return _heartbeat(db, claim, lease_ms, resolve_now(now_ms))


# -- finishing -----------------------------------------------------------------------


def complete_in(
    tr: Transaction,
    claim: Claim,
    now: int,
    tally: Tally | None = None,
    *,
    outcome: JobState = JobState.COMPLETED,
    found: Standing | None = None,
) -> bool:
    """Finish the claimed job with ``outcome`` in ``tr``; False when this claim already had."""
    job = _held(tr, claim, found, outcome.value)
    if job is None:
        return False
    finish_job(tr, queue_keys(claim.queue_id), job, outcome, now, tally)
    return True


def _held(tr: Transaction, claim: Claim, found: Standing | None, done_as: str) -> Job | None:
    """The claim's job while the claim holds it; None when this claim already settled it as
    ``done_as`` (an earlier try of the same call); LeaseLost otherwise, changing nothing."""
    found = found if found is not None else standing(tr, claim)
    if found.status is Status.HELD:
        assert found.job is not None
        return found.job
    if found.status is Status.SETTLED and found.outcome == done_as:
        return None
    raise found.lost(claim) if found.status is Status.LOST else _settled(claim, found.outcome)


def _settled(claim: Claim, outcome: str | None) -> LeaseLost:
    how = "put it back on the queue" if outcome == "put_back" else f"finished it ({outcome})"
    return LeaseLost(claim.job_id, f"this claim already {how}")


@transactional
def _complete(tr: Transaction, claim: Claim, outcome: JobState, now: int) -> bool:
    return complete_in(tr, claim, now, outcome=outcome)


def complete(db_or_tr: Database | Transaction, claim: Claim, *, now_ms: int | None = None) -> bool:
    """Mark the claimed job done and remove it; joins the caller's transaction if given one.

    Returns True when this call completed the job, False when an earlier try of the
    same transaction already had (so a caller composing its own writes skips them).

    Raises:
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    check_claim(claim)
    return _complete(db_or_tr, claim, JobState.COMPLETED, resolve_now(now_ms))


def discard_in(
    tr: Transaction,
    claim: Claim,
    reason: str,
    now: int,
    tally: Tally | None = None,
    *,
    found: Standing | None = None,
) -> bool:
    """Drop the claimed job in ``tr``, recording ``reason``; False when already done."""
    job = _held(tr, claim, found, JobState.DISCARDED.value)
    if job is None:
        return False
    job = job.evolve(last_error=truncate_error(reason) or None)
    finish_job(tr, queue_keys(claim.queue_id), job, JobState.DISCARDED, now, tally)
    return True


@transactional
def _discard(tr: Transaction, claim: Claim, reason: str, now: int) -> None:
    discard_in(tr, claim, reason, now)


def discard(db_or_tr: Database | Transaction, claim: Claim, reason: str = "") -> None:
    """Drop the claimed job without running it again, recording ``reason``."""
    check_claim(claim)
    if not isinstance(reason, str):
        raise TypeError(f"reason must be text, not {type(reason).__name__}")
    _discard(db_or_tr, claim, reason, resolve_now(None))


def dead_letter_in(
    tr: Transaction,
    claim: Claim,
    reason: str,
    now: int,
    tally: Tally | None = None,
    *,
    found: Standing | None = None,
) -> bool:
    """Move the claimed job to the dead letters in ``tr``; False when already done."""
    job = _held(tr, claim, found, JobState.DEAD.value)
    if job is None:
        return False
    bury_job(tr, queue_keys(claim.queue_id), job, truncate_error(reason), now, tally)
    return True


@transactional
def _dead_letter(tr: Transaction, claim: Claim, reason: str, now: int) -> None:
    dead_letter_in(tr, claim, reason, now)


def dead_letter(
    db: Database | Transaction, claim: Claim, reason: str, *, now_ms: int | None = None
) -> None:
    """Move the claimed job straight to the dead letters (e.g. its topic has no handler)."""
    check_claim(claim)
    if not isinstance(reason, str):
        raise TypeError(f"reason must be text, not {type(reason).__name__}")
    _dead_letter(db, claim, str(reason), resolve_now(now_ms))


# -- putting back ---------------------------------------------------------------------


def _put_back_in(
    tr: Transaction,
    claim: Claim,
    vis_ms: int,
    *,
    error: str | None,
    refund: bool,
    ready: bool,
    tally: Tally | None = None,
    found: Standing | None = None,
) -> None:
    job = _held(tr, claim, found, "put_back")
    if job is None:
        return  # an earlier try of this call put it back already
    back = job.evolve(
        state=JobState.READY if ready else JobState.SCHEDULED,
        vis_ms=vis_ms,
        owner=None,
        attempt=job.attempt - 1 if refund else job.attempt,
        last_error=truncate_error(error) if error is not None else job.last_error,
    )
    store_job(tr, queue_keys(claim.queue_id), job, back, tally)
    pointers.ensure_visible(tr, job.queue, vis_ms)


def fail_in(
    tr: Transaction,
    claim: Claim,
    reason: str,
    now: int,
    *,
    delay_ms: int,
    max_attempts: int | None = None,
    tally: Tally | None = None,
    found: Standing | None = None,
) -> FailResult:
    """Record a failed attempt in ``tr``: retry after ``delay_ms``, or dead-letter when the
    job's attempts (its own limit, else ``max_attempts``, else the default) run out."""
    found = found if found is not None else standing(tr, claim)
    if found.status is Status.SETTLED:
        if found.outcome == JobState.DEAD.value:
            return "dead_lettered"
        if found.outcome == "put_back":
            return "requeued"  # an earlier try of this call requeued it
    if found.status is not Status.HELD:
        raise found.lost(claim) if found.status is Status.LOST else _settled(claim, found.outcome)
    job = found.job
    assert job is not None
    reason = truncate_error(reason)
    if job.attempt >= attempt_limit(job.max_attempts, max_attempts):
        bury_job(tr, found.keys, job, reason, now, tally)
        return "dead_lettered"
    vis = now + delay_ms
    retry = job.evolve(state=JobState.SCHEDULED, vis_ms=vis, owner=None, last_error=reason)
    store_job(tr, found.keys, job, retry, tally)
    pointers.ensure_visible(tr, job.queue, vis)
    return "requeued"


@transactional
def _fail(
    tr: Transaction,
    claim: Claim,
    reason: str,
    now: int,
    delay_ms: int,
    max_attempts: int | None,
) -> FailResult:
    return fail_in(tr, claim, reason, now, delay_ms=delay_ms, max_attempts=max_attempts)


def fail(
    db: Database | Transaction,
    claim: Claim,
    reason: str,
    *,
    base_delay_ms: int = DEFAULT_BASE_DELAY_MS,
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
    max_attempts: int | None = None,
    delay_ms: int | None = None,
    now_ms: int | None = None,
) -> FailResult:
    """Record a failed attempt: retry later with backoff, or dead-letter when attempts run out.

    The delay after attempt ``n`` is ``min(max_delay_ms, base_delay_ms * 2**(n-1))``
    with equal jitter, unless ``delay_ms`` fixes it. ``max_attempts`` applies when the
    job was enqueued without one (the handler's setting); else 5.

    Raises:
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    check_claim(claim)
    if not isinstance(reason, str):
        raise TypeError(f"reason must be text, not {type(reason).__name__}")
    check_positive_ms("base_delay_ms", base_delay_ms)
    check_positive_ms("max_delay_ms", max_delay_ms)
    if delay_ms is None:
        delay_ms = backoff_ms(claim.attempt, base_delay_ms, max_delay_ms)
    check_delay_ms("delay_ms", delay_ms)
    return _fail(db, claim, str(reason), resolve_now(now_ms), int(delay_ms), max_attempts)


def snooze_in(
    tr: Transaction,
    claim: Claim,
    seconds: float,
    now: int,
    tally: Tally | None = None,
    *,
    found: Standing | None = None,
) -> None:
    """Put the job back in ``tr`` to run after ``seconds``, refunding the attempt."""
    vis = now + round(seconds * 1000)
    _put_back_in(tr, claim, vis, error=None, refund=True, ready=False, tally=tally, found=found)


@transactional
def _snooze(tr: Transaction, claim: Claim, seconds: float, now: int) -> None:
    snooze_in(tr, claim, seconds, now)


def snooze(
    db: Database | Transaction, claim: Claim, seconds: float, *, now_ms: int | None = None
) -> None:
    """Run the job again after ``seconds`` without using up an attempt."""
    check_claim(claim)
    check_delay_ms("seconds", seconds * 1000 if isinstance(seconds, int | float) else seconds)
    _snooze(db, claim, seconds, resolve_now(now_ms))


def release_in(tr: Transaction, claim: Claim, now: int, tally: Tally | None = None) -> None:
    """Give an unstarted claim back in ``tr``: visible at once, its attempt refunded."""
    vis = min(claim.enqueued_ms or now, now)
    _put_back_in(tr, claim, vis, error=None, refund=True, ready=True, tally=tally)


@transactional
def _release(tr: Transaction, claim: Claim, now: int) -> None:
    release_in(tr, claim, now)


def release(db: Database | Transaction, claim: Claim, *, now_ms: int | None = None) -> None:
    """Give an unstarted claim back: visible to others at once, its attempt refunded."""
    check_claim(claim)
    _release(db, claim, resolve_now(now_ms))


@transactional
def release_all(tr: Transaction, claims: Sequence[Claim], now: int) -> int:
    """Release many unstarted claims in one transaction; how many were still held."""
    tally = Tally()
    released = 0
    for claim, found in zip(claims, standings(tr, claims), strict=True):
        vis = min(claim.enqueued_ms or now, now)
        try:
            _put_back_in(
                tr, claim, vis, error=None, refund=True, ready=True, tally=tally, found=found
            )
        except LeaseLost:
            continue
        released += 1
    tally.flush(tr)
    return released


def heartbeat_all(
    tr: Transaction, claims: Sequence[Claim], lease_ms: int, now: int
) -> list[Claim | Status]:
    """Extend every held claim's lease in one transaction (a consumer's lease keeper).

    Returns, per claim, the renewed claim, or where it stands when it is not held:
    ``Status.SETTLED`` (this claim already settled it) or ``Status.LOST``.
    """
    out: list[Claim | Status] = []
    for found in standings(tr, claims):
        if found.status is not Status.HELD:
            out.append(found.status)
            continue
        job = found.job
        assert job is not None
        renewed = job.evolve(state=JobState.LEASED, vis_ms=now + lease_ms)
        store_job(tr, found.keys, job, renewed)
        if renewed.vis_ms < job.vis_ms:
            pointers.ensure_visible(tr, job.queue, renewed.vis_ms)
        out.append(Claim.of(renewed))
    return out
