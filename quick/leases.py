"""What a claim may do with its job: heartbeat, complete, fail, snooze, discard, release.

Every operation is the same three fenced steps: :func:`standing` (where the claim
stands with its job, :mod:`quick.fencing`), :func:`decide` (what that means for the
operation: the pure table of :mod:`quick.settlement`), and :func:`apply` (the one
writer, :func:`quick.records.apply`, then the job's extension's hook). An operation
changes nothing (raising :class:`LeaseLost`) once the job was claimed by someone else
or removed. A job put back (fail, snooze, release) loses its owner but keeps its
token until it is claimed again: the claim can no longer complete or extend it, yet a
retried put-back recognises its own earlier commit.

Retry semantics: every operation here is safe under the retry loop. A complete
retried after ``commit_unknown_result`` finds the job's tombstone carrying its own
token and outcome and answers as the committed try did. The ``*_in`` functions and
:func:`apply` take a :class:`~quick.counters.Tally` so that a batch settles many
claims in one transaction with one counter write per queue and state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick import records
from quick.claiming import resolve_now
from quick.counters import Tally
from quick.errors import LeaseLost
from quick.extensions import JobExtension
from quick.fencing import Standing, standing, standings
from quick.jobs import DEFAULT_LEASE_MS, Claim
from quick.results import encode_result
from quick.retrying import DEFAULT_BASE_DELAY_MS, DEFAULT_MAX_DELAY_MS, attempt_limit, backoff_ms
from quick.settlement import Act, Action, Ending, Hook, Outcome, Status
from quick.settlement import decide as decide_row
from quick.validation import check_claim, check_delay_ms, check_positive_ms

__all__ = [
    "standing",
    "decide",
    "apply",
    "lost",
    "heartbeat",
    "heartbeat_in",
    "complete",
    "complete_in",
    "fail",
    "fail_in",
    "snooze",
    "discard",
    "release",
    "dead_letter",
    "release_all",
    "heartbeat_all",
]


# -- the three steps ---------------------------------------------------------------------


def decide(
    claim: Claim, found: Standing, ending: Ending, *, extended: bool = False, limit: int = 0
) -> Action:
    """What ``claim``, standing at ``found``, does for an attempt that ended as ``ending``
    (``limit``: the job's attempt limit, which tells a last failure from a retry)."""
    return decide_row(found.status, found.outcome, ending, extended, claim.attempt, limit)


def apply(
    tr: Transaction,
    claim: Claim,
    found: Standing,
    action: Action,
    now: int,
    vis_ms: int = 0,
    error: str | None = None,
    tally: Tally | None = None,
    extension: JobExtension | None = None,
    output: Any = None,
    limit: int = 0,
    result: bytes | None = None,
) -> Claim | None:
    """Write ``action`` (decided for a held claim) to the job's records, then tell the
    job's ``extension`` what happened (the one place extensions hear of a settlement);
    the renewed claim when the action renews it.

    ``vis_ms`` is when a job put back becomes visible (or a renewed lease's expiry),
    ``error`` the attempt's error text, ``output`` a success's return value, ``limit``
    the job's attempt limit (the extension records them), ``result`` the success's
    encoded result record (:func:`quick.results.encode_result`), stored with the job.
    """
    assert found.job is not None
    hook = action.hook if extension is not None else None
    if hook is Hook.SUCCEEDED:
        assert extension is not None
        extension.on_succeeded(tr, claim, output, now)
    job = records.apply(tr, found.keys, found.job, action, now, vis_ms, error, tally, result)
    if hook is Hook.RETRYING or hook is Hook.FAILED:
        assert extension is not None
        retry_at = vis_ms if hook is Hook.RETRYING else None
        extension.on_failed(tr, claim, error or "", retry_at, now, limit)
    return Claim.of(job) if action.act is Act.RENEW else None


def lost(claim: Claim, found: Standing) -> LeaseLost:
    """The error for an operation the table answered :data:`~quick.settlement.LOST`."""
    if found.status is Status.SETTLED:
        how = (
            "put it back on the queue"
            if found.outcome is Outcome.REQUEUED
            else f"finished it ({found.outcome})"
        )
        return LeaseLost(claim.job_id, f"this claim already {how}")
    return LeaseLost(claim.job_id, found.reason)


def _settle(
    tr: Transaction,
    claim: Claim,
    ending: Ending,
    now: int,
    *,
    found: Standing | None = None,
    tally: Tally | None = None,
    vis_ms: int = 0,
    error: str | None = None,
    limit: int = 0,
    result: bytes | None = None,
) -> Action:
    """The three steps for one plain operation; LeaseLost (nothing written) when lost."""
    found = standing(tr, claim) if found is None else found
    action = decide(claim, found, ending, limit=limit)
    if action.act is Act.LOST:
        raise lost(claim, found)
    if action.act is not Act.DONE:
        apply(tr, claim, found, action, now, vis_ms, error, tally, result=result)
    return action


# -- heartbeat ---------------------------------------------------------------------


def heartbeat_in(tr: Transaction, claim: Claim, lease_ms: int, now: int) -> Claim:
    """Extend the claim's lease in ``tr``; LeaseLost (nothing changed) unless it is held."""
    found = standing(tr, claim)
    action = decide(claim, found, Ending.RENEW)
    if action.act is Act.DONE:
        raise LeaseLost(claim.job_id, "this claim already settled the job")
    if action.act is Act.LOST:
        raise lost(claim, found)
    renewed = apply(tr, claim, found, action, now, vis_ms=now + lease_ms)
    assert renewed is not None
    return renewed


@transactional
def _heartbeat(tr: Transaction, claim: Claim, lease_ms: int, now: int) -> Claim:
    return heartbeat_in(tr, claim, lease_ms, now)


def heartbeat(
    db: Database, claim: Claim, *, lease_ms: int = DEFAULT_LEASE_MS, now_ms: int | None = None
) -> Claim:
    """Extend the claim's lease to ``lease_ms`` from now; the renewed claim is returned.

    Raises:
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    check_claim(claim)
    check_positive_ms("lease_ms", lease_ms)
    return _heartbeat(db, claim, lease_ms, resolve_now(now_ms))


def heartbeat_all(
    tr: Transaction, claims: Sequence[Claim], lease_ms: int, now: int
) -> list[Claim | Outcome]:
    """Extend every held claim's lease in one transaction (a consumer's lease keeper).

    Returns, per claim, the renewed claim, or ``Outcome.LEASE_LOST`` when it is lost,
    or how this claim already settled the job (its worker is about to report it).
    """
    out: list[Claim | Outcome] = []
    for claim, found in zip(claims, standings(tr, claims), strict=True):
        action = decide(claim, found, Ending.RENEW)
        if action.act is not Act.RENEW:
            out.append(action.outcome)
            continue
        renewed = apply(tr, claim, found, action, now, vis_ms=now + lease_ms)
        assert renewed is not None
        out.append(renewed)
    return out


# -- finishing -----------------------------------------------------------------------


def complete_in(
    tr: Transaction,
    claim: Claim,
    now: int,
    tally: Tally | None = None,
    *,
    found: Standing | None = None,
    result: bytes | None = None,
) -> bool:
    """Finish the claimed job as completed in ``tr`` (with ``result``, an encoded result
    record); False when this claim already had."""
    action = _settle(tr, claim, Ending.SUCCEEDED, now, found=found, tally=tally, result=result)
    return action.act is not Act.DONE


@transactional
def _complete(tr: Transaction, claim: Claim, now: int, result: bytes | None) -> bool:
    return complete_in(tr, claim, now, result=result)


def complete(
    db_or_tr: Database | Transaction,
    claim: Claim,
    *,
    result: Any = None,
    now_ms: int | None = None,
) -> bool:
    """Mark the claimed job done and remove it; joins the caller's transaction if given one.

    ``result`` is kept with the finished job for :func:`quick.result` (None: nothing).
    Returns True when this call completed the job, False when an earlier try of the
    same transaction already had (so a caller composing its own writes skips them).

    Raises:
        InvalidPayload / InvalidArgument: ``result`` does not encode, or is too large
            (nothing is written).
        LeaseLost: the job was claimed by someone else or is gone; nothing changed.
    """
    check_claim(claim)
    record = encode_result(result)
    return _complete(db_or_tr, claim, resolve_now(now_ms), record)


@transactional
def _discard(tr: Transaction, claim: Claim, reason: str, now: int) -> None:
    _settle(tr, claim, Ending.DISCARDED, now, error=reason)


def discard(db_or_tr: Database | Transaction, claim: Claim, reason: str = "") -> None:
    """Drop the claimed job without running it again, recording ``reason``."""
    check_claim(claim)
    if not isinstance(reason, str):
        raise TypeError(f"reason must be text, not {type(reason).__name__}")
    _discard(db_or_tr, claim, reason, resolve_now(None))


@transactional
def _dead_letter(tr: Transaction, claim: Claim, reason: str, now: int) -> None:
    _settle(tr, claim, Ending.DEAD_LETTER, now, error=reason)


def dead_letter(
    db: Database | Transaction, claim: Claim, reason: str, *, now_ms: int | None = None
) -> None:
    """Move the claimed job straight to the dead letters (e.g. its topic has no handler)."""
    check_claim(claim)
    if not isinstance(reason, str):
        raise TypeError(f"reason must be text, not {type(reason).__name__}")
    _dead_letter(db, claim, str(reason), resolve_now(now_ms))


# -- putting back ---------------------------------------------------------------------


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
) -> Outcome:
    """Record a failed attempt in ``tr``: retry after ``delay_ms`` (``REQUEUED``), or
    dead-letter (``DEAD_LETTERED``) when the job's attempts (its own limit, else
    ``max_attempts``, else the default) run out."""
    limit = attempt_limit(claim.max_attempts, max_attempts)
    action = _settle(
        tr,
        claim,
        Ending.FAILED,
        now,
        found=found,
        tally=tally,
        vis_ms=now + delay_ms,
        error=reason,
        limit=limit,
    )
    return action.outcome


@transactional
def _fail(
    tr: Transaction,
    claim: Claim,
    reason: str,
    now: int,
    delay_ms: int,
    max_attempts: int | None,
) -> Outcome:
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
) -> Outcome:
    """Record a failed attempt: retry later with backoff, or dead-letter when attempts run out.

    The delay after attempt ``n`` is ``min(max_delay_ms, base_delay_ms * 2**(n-1))``
    with equal jitter, unless ``delay_ms`` fixes it. ``max_attempts`` applies when the
    job was enqueued without one (the handler's setting); else 5.

    Returns:
        ``"requeued"`` or ``"dead_lettered"`` (an :class:`~quick.Outcome`).

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


@transactional
def _snooze(tr: Transaction, claim: Claim, seconds: float, now: int) -> None:
    _settle(tr, claim, Ending.SNOOZED, now, vis_ms=now + round(seconds * 1000))


def snooze(
    db: Database | Transaction, claim: Claim, seconds: float, *, now_ms: int | None = None
) -> None:
    """Run the job again after ``seconds`` without using up an attempt."""
    check_claim(claim)
    check_delay_ms("seconds", seconds * 1000 if isinstance(seconds, int | float) else seconds)
    _snooze(db, claim, seconds, resolve_now(now_ms))


def _released_at(claim: Claim, now: int) -> int:
    """When a released claim's job becomes visible: at once, in its old place."""
    return min(claim.enqueued_ms or now, now)


@transactional
def _release(tr: Transaction, claim: Claim, now: int) -> None:
    _settle(tr, claim, Ending.RELEASED, now, vis_ms=_released_at(claim, now))


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
        action = decide(claim, found, Ending.RELEASED)
        if action.act is Act.LOST:
            continue
        if action.act is not Act.DONE:
            vis = _released_at(claim, now)
            apply(tr, claim, found, action, now, vis_ms=vis, tally=tally)
        released += 1
    tally.flush(tr)
    return released
