"""What happens to a claimed job after its handler runs.

return -> completed; ``Snooze`` -> rescheduled without using an attempt; ``Discard`` ->
dropped and recorded; any other exception -> retried by :mod:`quick.retrying` until
the attempts run out, then dead-lettered with the last error; a topic with no handler
-> dead-lettered at once.

:func:`settle_batch` records many attempts in one transaction (the consumer's group
commit), :func:`settle` one; :func:`run_claim` runs a synchronous handler start to finish.

A job with an extension (:mod:`quick.extensions`, e.g. a workflow step) settles in the
same transaction as its extension's hook: success records the handler's return value;
a failure with attempts left is rescheduled; the last failure (or a ``Discard``, or a
missing handler) finishes the job as ``failed`` instead of dead-lettering it, since
the extension owns what happens next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from keyspace.errors import QuickError, StorageError
from keyspace.layout import describe, queue_keys
from keyspace.protocol import Database, Transaction
from quick.app import App, JobConfig, Meta
from quick.counters import Tally
from quick.errors import Discard, InvalidArgument, LeaseLost, Snooze
from quick.extensions import JobExtension, extension_for
from quick.fencing import Standing, Status, standing, standings
from quick.jobs import Claim, JobState, now_ms
from quick.leases import complete_in, dead_letter_in, discard_in, fail_in, snooze_in
from quick.retrying import decide

__all__ = [
    "Outcome",
    "Attempt",
    "settle",
    "settle_batch",
    "run_claim",
    "meta_for",
    "describe_error",
    "job_config",
    "complete_with",
    "may_run",
    "run_transactional",
    "run_attempt",
]

log = logging.getLogger("quick.store")


class Outcome(StrEnum):
    """How one attempt ended."""

    COMPLETED = "completed"
    REQUEUED = "requeued"
    DEAD_LETTERED = "dead_lettered"
    SNOOZED = "snoozed"
    DISCARDED = "discarded"
    LEASE_LOST = "lease_lost"
    #: An extension's job whose last attempt failed (the extension recorded it).
    FAILED = "failed"
    #: An unstarted claim given back (a consumer stopping).
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One finished attempt to record: the claim, its handler config, and how it ended
    (``error`` None for a success returning ``output``)."""

    claim: Claim
    config: JobConfig | None
    error: BaseException | None = None
    output: Any = None


def job_config(app: App, claim: Claim) -> JobConfig | None:
    """The handler and policy that run ``claim``: the app's, unless its extension says.

    None (no handler runs) for a job naming an extension this process has not
    registered: it is logged by its key, and settling it dead-letters it with the reason.
    """
    registered = app.config(claim.topic)
    try:
        extension = extension_for(claim.extension)
    except InvalidArgument as bad:
        key = describe(queue_keys(claim.queue_id).job(claim.job_id))
        log.warning("%s: %s; dead-lettered without running a handler", key, bad.problem)
        return None
    return registered if extension is None else extension.job_config(claim, registered)


def meta_for(claim: Claim) -> Meta:
    context = None
    if claim.extension is not None:
        try:
            extension = extension_for(claim.extension)
        except InvalidArgument:
            extension = None
        if extension is not None:
            context = extension.context(claim)
    return Meta(
        topic=claim.topic,
        queue_id=claim.queue_id,
        job_id=claim.job_id,
        attempt=claim.attempt,
        lease_deadline_ms=claim.lease_until_ms,
        owner=claim.owner,
        context=context,
    )


def may_run(tr: Transaction, claim: Claim) -> bool:
    """In a transactional handler's transaction, before its writes: True while the claim
    holds the job; False when an earlier try of this transaction already completed it
    (then the handler must not run again). Raises LeaseLost otherwise."""
    found = standing(tr, claim)
    if found.status is Status.HELD:
        return True
    if found.status is Status.SETTLED and found.outcome == JobState.COMPLETED.value:
        return False
    raise LeaseLost(
        claim.job_id, found.reason or f"this claim already settled it ({found.outcome})"
    )


def complete_with(tr: Transaction, claim: Claim, output: Any) -> None:
    """Complete ``claim`` in ``tr``, recording ``output`` with its extension if it has one.

    Raises:
        InvalidPayload / InvalidArgument: the extension cannot store ``output``;
            raised inside ``tr``, so the caller's transaction commits nothing.
    """
    now = now_ms()
    completed = complete_in(tr, claim, now)
    extension = extension_for(claim.extension) if completed else None
    if extension is not None:
        extension.on_succeeded(tr, claim, output, now)


def describe_error(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _settle_in(
    tr: Transaction, attempt: Attempt, now: int, tally: Tally, found: Standing
) -> Outcome:
    """Record one attempt in ``tr``, given where its claim stands; LeaseLost (nothing
    written for it) once it is lost."""
    claim, config, error = attempt.claim, attempt.config, attempt.error
    try:
        extension = extension_for(claim.extension)
    except InvalidArgument as bad:
        dead_letter_in(tr, claim, str(bad), now, tally, found=found)
        return Outcome.DEAD_LETTERED
    if extension is not None:
        return _settle_extended(tr, extension, attempt, now, tally, found)
    if config is None:
        reason = f"unknown topic {claim.topic!r}: no handler is registered"
        dead_letter_in(tr, claim, reason, now, tally, found=found)
        return Outcome.DEAD_LETTERED
    if error is None:
        complete_in(tr, claim, now, tally, found=found)
        return Outcome.COMPLETED
    if isinstance(error, Snooze):
        snooze_in(tr, claim, error.seconds, now, tally, found=found)
        return Outcome.SNOOZED
    if isinstance(error, Discard):
        discard_in(tr, claim, error.reason, now, tally, found=found)
        return Outcome.DISCARDED
    decision = decide(attempt=claim.attempt, job_max=claim.max_attempts, config=config)
    result = fail_in(
        tr,
        claim,
        describe_error(error),
        now,
        delay_ms=decision.delay_ms or 0,
        max_attempts=decision.max_attempts,
        tally=tally,
        found=found,
    )
    return Outcome(result)


def _settle_extended(
    tr: Transaction,
    extension: JobExtension,
    attempt: Attempt,
    now: int,
    tally: Tally,
    found: Standing,
) -> Outcome:
    """The job's settlement and its extension's record of it, in ``tr``."""
    claim, config, error = attempt.claim, attempt.config, attempt.error
    if found.status is Status.LOST:
        raise found.lost(claim)
    if found.status is Status.SETTLED:
        return Outcome.COMPLETED if error is None else Outcome.REQUEUED  # an earlier try did it
    if config is None:
        error = LookupError(f"unknown topic {claim.topic!r}: no handler is registered")
    if error is None:
        extension.on_succeeded(tr, claim, attempt.output, now)
        complete_in(tr, claim, now, tally, found=found)
        return Outcome.COMPLETED
    if isinstance(error, Snooze):
        snooze_in(tr, claim, error.seconds, now, tally, found=found)
        return Outcome.SNOOZED
    reason = describe_error(error)
    decision = decide(attempt=claim.attempt, job_max=claim.max_attempts, config=config)
    if config is None or isinstance(error, Discard) or decision.final:
        discard_in(tr, claim, reason, now, tally, found=found)
        extension.on_failed(tr, claim, reason, None, now, decision.max_attempts)
        return Outcome.FAILED
    delay = decision.delay_ms or 0
    fail_in(
        tr,
        claim,
        reason,
        now,
        delay_ms=delay,
        max_attempts=decision.max_attempts,
        tally=tally,
        found=found,
    )
    extension.on_failed(tr, claim, reason, now + delay, now, decision.max_attempts)
    return Outcome.REQUEUED


def _settle_all(
    tr: Transaction, attempts: Sequence[Attempt], at_ms: int | None = None
) -> list[Outcome]:
    now = now_ms() if at_ms is None else at_ms
    tally = Tally()
    outcomes = []
    found = standings(tr, [attempt.claim for attempt in attempts])
    for attempt, standing_now in zip(attempts, found, strict=True):
        try:
            outcomes.append(_settle_in(tr, attempt, now, tally, standing_now))
        except LeaseLost:
            outcomes.append(Outcome.LEASE_LOST)
    tally.flush(tr)
    return outcomes


def settle_batch(
    db: Database, attempts: Sequence[Attempt], *, now_ms: int | None = None
) -> list[Outcome]:
    """Record many attempts in one transaction; their outcomes, in order.

    A lost lease loses only its own attempt. If any attempt cannot be recorded (an
    extension refuses its output, say), nothing of the batch is written and each is
    settled on its own, so that one fails alone. ``now_ms`` is the clock retries and
    snoozes count from (the wall clock by default; :func:`quick.testing.drain` passes
    its simulated one).
    """
    if not attempts:
        return []
    try:
        return db.transact(_settle_all, attempts, now_ms)
    except StorageError:
        raise
    except QuickError:
        return [_settle_alone(db, attempt, now_ms) for attempt in attempts]


def _settle_alone(db: Database, attempt: Attempt, at_ms: int | None = None) -> Outcome:
    try:
        (outcome,) = db.transact(_settle_all, [attempt], at_ms)
        return outcome
    except LeaseLost:
        return Outcome.LEASE_LOST
    except StorageError:
        raise
    except QuickError as unstorable:
        if attempt.error is not None:
            raise
        # The success could not be recorded (say, an output too large to pass on);
        # nothing of it was written, and the attempt fails with the reason.
        failed = Attempt(attempt.claim, attempt.config, unstorable)
        (outcome,) = db.transact(_settle_all, [failed], at_ms)
        return outcome


def settle(
    db: Database,
    claim: Claim,
    config: JobConfig | None,
    error: BaseException | None,
    output: Any = None,
) -> Outcome:
    """Record the outcome of an attempt that ended with ``error`` (None = success).

    ``output`` is the handler's return value, kept by a job extension (workflow steps).
    """
    return _settle_alone(db, Attempt(claim, config, error, output))


def run_claim(db: Database, app: App, claim: Claim) -> Outcome:
    """Run a synchronous handler for ``claim`` and record its outcome.

    A transactional handler (``handler(tr, payload, meta)``) runs inside the
    transaction that completes the job, so its writes commit exactly once with it.
    """
    config = job_config(app, claim)
    if config is None:
        return settle(db, claim, None, None)
    if config.is_async:
        raise TypeError(f"{claim.topic}: async handlers run in the consumer runtime")
    meta = meta_for(claim)
    try:
        if config.transactional:
            db.transact(run_transactional, config, claim, meta)
            return Outcome.COMPLETED
        output = config.handler(claim.payload, meta)
    except LeaseLost:
        return Outcome.LEASE_LOST
    except Exception as error:
        return settle(db, claim, config, error)
    return settle(db, claim, config, None, output)


def run_transactional(tr: Transaction, config: JobConfig, claim: Claim, meta: Meta) -> Any:
    """A transactional handler and its job's completion, as one transaction body."""
    if not may_run(tr, claim):
        return None  # an earlier try committed the handler and the completion
    output = config.handler(tr, claim.payload, meta)
    complete_with(tr, claim, output)
    return output


def _call(config: JobConfig, payload: Any, meta: Meta) -> Any:
    return config.handler(payload, meta)


def run_attempt(
    db: Database,
    claim: Claim,
    config: JobConfig | None,
    call: Callable[[JobConfig, Any, Meta], Any] = _call,
) -> Attempt | Outcome:
    """Run one claim's handler in this thread: the attempt to record (with
    :func:`settle_batch`), or the outcome when it is recorded already (a transactional
    handler completes its job itself; a lost lease records nothing).

    ``call`` runs a plain handler (``consumer.lanes`` calls it directly;
    ``quick.testing`` runs async ones under trio).
    """
    if config is None:
        return Attempt(claim, None)  # settles as "no handler"
    meta = meta_for(claim)
    try:
        if config.transactional:
            db.transact(run_transactional, config, claim, meta)
            return Outcome.COMPLETED
        output = call(config, claim.payload, meta)
    except LeaseLost:
        return Outcome.LEASE_LOST
    except Exception as error:
        return Attempt(claim, config, error)
    return Attempt(claim, config, None, output)
