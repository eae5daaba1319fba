"""What happens to a claimed job after its handler runs.

return -> completed; ``Snooze`` -> rescheduled without using an attempt; ``Discard`` ->
dropped and recorded; any other exception -> retried with capped exponential backoff and
jitter until the attempts run out, then dead-lettered with the last error; a topic with
no handler -> dead-lettered at once. The consumer runtime uses :func:`settle` for each
outcome; :func:`run_claim` runs a synchronous handler start to finish.

A job with an extension (:mod:`quick.extensions`, e.g. a workflow step) settles in one
transaction with its extension's hook: success records the handler's return value;
a failure with attempts left is rescheduled; the last failure (or a ``Discard``, or a
missing handler) finishes the job as ``failed`` instead of dead-lettering it, since
the extension owns what happens next.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from keyspace.errors import QuickError
from keyspace.protocol import Database, Transaction
from quick.app import App, JobConfig, Meta
from quick.errors import Discard, InvalidArgument, LeaseLost, Snooze
from quick.extensions import JobExtension, extension_for
from quick.jobs import DEFAULT_MAX_ATTEMPTS, Claim, now_ms
from quick.leases import (
    backoff_ms,
    complete,
    dead_letter,
    discard,
    fail,
    holding,
    holds,
    snooze,
)

__all__ = [
    "Outcome",
    "settle",
    "run_claim",
    "meta_for",
    "describe_error",
    "job_config",
    "complete_with",
    "settle_successes",
]


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


def job_config(app: App, claim: Claim) -> JobConfig | None:
    """The handler and policy that run ``claim``: the app's, unless its extension says."""
    registered = app.config(claim.topic)
    try:
        extension = extension_for(claim.extension)
    except InvalidArgument:
        return registered  # settle reports the unloadable extension
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


def complete_with(tr: Transaction, claim: Claim, output: Any) -> None:
    """Complete ``claim`` in ``tr``, recording ``output`` with its extension if it has one.

    Raises:
        InvalidPayload / InvalidArgument: the extension cannot store ``output``;
            raised inside ``tr``, so the caller's transaction commits nothing.
    """
    extension = extension_for(claim.extension) if complete(tr, claim) else None
    if extension is not None:
        extension.on_succeeded(tr, claim, output, now_ms())


def describe_error(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
    try:
        try:
            extension = extension_for(claim.extension)
        except InvalidArgument as bad:
            dead_letter(db, claim, str(bad))
            return Outcome.DEAD_LETTERED
        if extension is not None:
            try:
                return db.transact(_settle_extended, extension, claim, config, error, output)
            except LeaseLost:
                raise
            except QuickError as unstorable:
                if error is not None:
                    raise
                # The success could not be recorded (say, an output too large to pass
                # on); nothing of it was written, and the attempt fails with the reason.
                return db.transact(_settle_extended, extension, claim, config, unstorable, None)
        if config is None:
            dead_letter(db, claim, f"unknown topic {claim.topic!r}: no handler is registered")
            return Outcome.DEAD_LETTERED
        if error is None:
            complete(db, claim)
            return Outcome.COMPLETED
        if isinstance(error, Snooze):
            snooze(db, claim, error.seconds)
            return Outcome.SNOOZED
        if isinstance(error, Discard):
            discard(db, claim, error.reason)
            return Outcome.DISCARDED
        base, cap = config.backoff_bounds_ms()
        result = fail(
            db,
            claim,
            describe_error(error),
            base_delay_ms=base,
            max_delay_ms=cap,
            max_attempts=config.max_attempts,
            delay_ms=config.retry_delay_ms(claim.attempt),
        )
        return Outcome(result)
    except LeaseLost:
        return Outcome.LEASE_LOST


def _settle_extended(
    tr: Transaction,
    extension: JobExtension,
    claim: Claim,
    config: JobConfig | None,
    error: BaseException | None,
    output: Any,
) -> Outcome:
    """One transaction: the job's settlement and its extension's record of it."""
    if not holding(tr, claim):
        return Outcome.COMPLETED if error is None else Outcome.REQUEUED  # an earlier try did it
    now = now_ms()
    if config is None:
        error = LookupError(f"unknown topic {claim.topic!r}: no handler is registered")
    if error is None:
        extension.on_succeeded(tr, claim, output, now)
        complete(tr, claim)
        return Outcome.COMPLETED
    if isinstance(error, Snooze):
        snooze(tr, claim, error.seconds, now_ms=now)
        return Outcome.SNOOZED
    reason = describe_error(error)
    allowed = claim.max_attempts or (config and config.max_attempts) or DEFAULT_MAX_ATTEMPTS
    final = config is None or isinstance(error, Discard) or claim.attempt >= allowed
    if final:
        discard(tr, claim, reason)
        extension.on_failed(tr, claim, reason, None, now, allowed)
        return Outcome.FAILED
    assert config is not None
    delay = config.retry_delay_ms(claim.attempt)
    if delay is None:
        delay = backoff_ms(claim.attempt, *config.backoff_bounds_ms())
    fail(tr, claim, reason, delay_ms=delay, max_attempts=allowed, now_ms=now)
    extension.on_failed(tr, claim, reason, now + delay, now, allowed)
    return Outcome.REQUEUED


Success = tuple[Claim, JobConfig, Any]


def settle_successes(db: Database, successes: list[Success]) -> list[Outcome]:
    """Record many successful attempts ``(claim, config, output)`` in one transaction.

    A consumer's group commit. A lost lease fails only its own claim. If any success
    cannot be recorded (an extension refuses its output, say), nothing of the batch
    is written and each is settled on its own, so that one fails alone.
    """
    try:
        return db.transact(_settle_successes, successes)
    except LeaseLost:
        raise
    except QuickError:
        return [settle(db, claim, config, None, output) for claim, config, output in successes]


def _settle_successes(tr: Transaction, successes: list[Success]) -> list[Outcome]:
    now = now_ms()
    outcomes = []
    for claim, _config, output in successes:
        try:
            completed = complete(tr, claim)  # False: an earlier try recorded it all
        except LeaseLost:
            outcomes.append(Outcome.LEASE_LOST)
            continue
        extension = extension_for(claim.extension) if completed else None
        if extension is not None:
            extension.on_succeeded(tr, claim, output, now)
        outcomes.append(Outcome.COMPLETED)
    return outcomes


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

            def body(tr: Transaction) -> Any:
                if not holds(tr, claim):
                    return None  # an earlier try committed the handler and the completion
                result = config.handler(tr, claim.payload, meta)
                complete_with(tr, claim, result)
                return result

            db.transact(body)
            return Outcome.COMPLETED
        output = config.handler(claim.payload, meta)
    except LeaseLost:
        return Outcome.LEASE_LOST
    except Exception as error:
        return settle(db, claim, config, error)
    return settle(db, claim, config, None, output)
