"""What happens to a claimed job after its handler runs.

return -> completed; ``Snooze`` -> rescheduled without using an attempt; ``Discard`` ->
dropped and recorded; any other exception -> retried with capped exponential backoff and
jitter until the attempts run out, then dead-lettered with the last error; a topic with
no handler -> dead-lettered at once. The consumer runtime uses :func:`settle` for each
outcome; :func:`run_claim` runs a synchronous handler start to finish.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from keyspace.protocol import Database, Transaction
from quick.app import App, JobConfig, Meta
from quick.errors import Discard, LeaseLost, Snooze
from quick.jobs import Claim
from quick.leases import complete, dead_letter, discard, fail, holds, snooze

__all__ = ["Outcome", "settle", "run_claim", "meta_for", "describe_error"]


class Outcome(StrEnum):
    """How one attempt ended."""

    COMPLETED = "completed"
    REQUEUED = "requeued"
    DEAD_LETTERED = "dead_lettered"
    SNOOZED = "snoozed"
    DISCARDED = "discarded"
    LEASE_LOST = "lease_lost"


def meta_for(claim: Claim) -> Meta:
    return Meta(
        topic=claim.topic,
        queue_id=claim.queue_id,
        job_id=claim.job_id,
        attempt=claim.attempt,
        lease_deadline_ms=claim.lease_until_ms,
        owner=claim.owner,
    )


def describe_error(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def settle(
    db: Database, claim: Claim, config: JobConfig | None, error: BaseException | None
) -> Outcome:
    """Record the outcome of an attempt that ended with ``error`` (None = success)."""
    try:
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


def run_claim(db: Database, app: App, claim: Claim) -> Outcome:
    """Run a synchronous handler for ``claim`` and record its outcome.

    A transactional handler (``handler(tr, payload, meta)``) runs inside the
    transaction that completes the job, so its writes commit exactly once with it.
    """
    config = app.config(claim.topic)
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
                complete(tr, claim)
                return result

            db.transact(body)
            return Outcome.COMPLETED
        config.handler(claim.payload, meta)
    except LeaseLost:
        return Outcome.LEASE_LOST
    except Exception as error:
        return settle(db, claim, config, error)
    return settle(db, claim, config, None)
