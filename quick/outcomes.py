"""What happens to a claimed job after its handler runs.

return -> completed; ``Snooze`` -> rescheduled without using an attempt; ``Discard`` ->
dropped and recorded; any other exception -> retried by :mod:`quick.retrying` until
the attempts run out, then dead-lettered with the last error; a topic with no handler
-> dead-lettered at once.

:func:`settle_batch` records many attempts in one transaction (the consumer's group
commit), :func:`settle` one; :func:`run_claim` runs a synchronous handler start to finish.
Each attempt is settled in three steps: where its claim stands (:mod:`quick.fencing`,
read for the whole batch at once), the action the table of :mod:`quick.settlement`
gives for that standing and the way the attempt ended, and :func:`quick.leases.apply`
(the writer, :func:`quick.records.apply`, then the extension's hook).

A job with an extension (:mod:`quick.extensions`, e.g. a workflow step) settles in the
same transaction as its extension's hook: success records the handler's return value;
a failure with attempts left is rescheduled; the last failure (or a ``Discard``, or a
missing handler) finishes the job as ``failed`` instead of dead-lettering it, since
the extension owns what happens next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from keyspace.errors import QuickError, StorageError
from keyspace.protocol import Database, Transaction
from quick.app import App, JobConfig, Meta
from quick.counters import Tally
from quick.errors import Discard, JobCancelled, LeaseLost, Snooze
from quick.extensions import Refused, prefetch, resolve
from quick.fencing import Standing, standing, standings
from quick.jobs import Claim, now_ms
from quick.leases import apply, cancelling, decide, lost
from quick.progress import JobSignals
from quick.results import encode_result
from quick.retrying import attempt_limit, retry_delay_ms
from quick.settlement import Act, Ending, Outcome
from quick.settlement import decide as decide_row
from quick.tracecontext import invoke

__all__ = [
    "Outcome",
    "Attempt",
    "settle",
    "settle_batch",
    "run_claim",
    "meta_for",
    "describe_error",
    "job_config",
    "run_transactional",
    "run_attempt",
    "with_result",
    "RESULT_BYTES_PER_COMMIT",
    "CANCELLED_ERROR",
]

#: Most result bytes one settlement transaction writes: a batch of large results is
#: split so that each commit stays well under the 10 MB transaction limit (a result
#: record is at most 100 kB, so a batch of 200 could otherwise reach 20 MB).
RESULT_BYTES_PER_COMMIT = 2_000_000

#: The error a job cancelled while it ran records (an extension hears it as the failure).
CANCELLED_ERROR = "cancelled while running (quick.cancel)"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One finished attempt to record: the claim, its handler config, and how it ended
    (``error`` None for a success returning ``output``; ``result``, the output encoded
    as a result record by :func:`with_result`)."""

    claim: Claim
    config: JobConfig | None
    error: BaseException | None = None
    output: Any = None
    result: bytes | None = None


def with_result(attempt: Attempt) -> Attempt:
    """``attempt`` with its output encoded as the job's result record, before any
    transaction; when the output cannot be stored (not msgpack, or too large) the
    attempt fails with that error instead, as any handler error does."""
    if attempt.error is not None or attempt.output is None or attempt.result is not None:
        return attempt
    try:
        return replace(attempt, result=encode_result(attempt.output))
    except QuickError as unstorable:
        return Attempt(attempt.claim, attempt.config, unstorable)


def _by_size(attempts: Sequence[Attempt]) -> Iterator[Sequence[Attempt]]:
    """``attempts`` in runs whose results add up to at most :data:`RESULT_BYTES_PER_COMMIT`."""
    start, size = 0, 0
    for i, attempt in enumerate(attempts):
        grown = size + (len(attempt.result) if attempt.result is not None else 0)
        if grown > RESULT_BYTES_PER_COMMIT and i > start:
            yield attempts[start:i]
            start, grown = i, grown - size
        size = grown
    yield attempts[start:]


def job_config(app: App, claim: Claim) -> JobConfig | None:
    """The handler and policy that run ``claim``: the app's, unless its extension says.

    None (no handler runs) for a job naming an extension this process has not
    registered: it is logged by its key, and settling it dead-letters it with the reason.
    """
    registered = app.config(claim.topic)
    extension = resolve(claim.extension)
    return registered if extension is None else extension.job_config(claim, registered)


def meta_for(claim: Claim, signals: JobSignals | None = None) -> Meta:
    """The ``meta`` a handler of ``claim`` gets; ``signals`` is shared with the worker."""
    extension = resolve(claim.extension) if claim.extension is not None else None
    return Meta(
        topic=claim.topic,
        queue_id=claim.queue_id,
        job_id=claim.job_id,
        attempt=claim.attempt,
        lease_deadline_ms=claim.lease_until_ms,
        owner=claim.owner,
        context=None if extension is None else extension.context(claim),
        signals=JobSignals() if signals is None else signals,
        trace=claim.trace,
    )


def describe_error(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _ending(attempt: Attempt, extended: bool) -> tuple[Ending, str | None]:
    """How ``attempt`` ended, and the error text to record with it."""
    config, error = attempt.config, attempt.error
    if config is None:
        reason = f"unknown topic {attempt.claim.topic!r}: no handler is registered"
        return Ending.NO_HANDLER, describe_error(LookupError(reason)) if extended else reason
    if error is None:
        return Ending.SUCCEEDED, None
    if isinstance(error, JobCancelled):
        return Ending.CANCELLED, CANCELLED_ERROR
    if isinstance(error, Snooze):
        return Ending.SNOOZED, None
    if isinstance(error, Discard):
        return Ending.DISCARDED, describe_error(error) if extended else error.reason
    return Ending.FAILED, describe_error(error)


def _settle_in(
    tr: Transaction, attempt: Attempt, now: int, tally: Tally, found: Standing
) -> Outcome:
    """Record one attempt in ``tr``, given where its claim stands (nothing is written
    for it once it is lost)."""
    claim, config = attempt.claim, attempt.config
    extension = None if claim.extension is None else resolve(claim.extension)
    error: str | None
    if isinstance(extension, Refused):
        ending, error, extension = Ending.UNLOADABLE, str(extension.error), None
    else:
        ending, error = _ending(attempt, extension is not None)
    limit = 0  # the attempt limit: what tells a last failure, and what extensions record
    if ending is not Ending.SUCCEEDED:
        limit = attempt_limit(claim.max_attempts, config.max_attempts if config else None)
    action = decide_row(
        found.status,
        found.outcome,
        ending,
        extension is not None,
        claim.attempt,
        limit,
        cancelling(found),
    )
    act = action.act
    if action.outcome is Outcome.CANCELLED:
        error = CANCELLED_ERROR
    if act is Act.LOST or act is Act.DONE:
        return action.outcome
    vis = 0
    if act is Act.PUT_BACK:
        if isinstance(attempt.error, Snooze):
            vis = now + round(attempt.error.seconds * 1000)
        else:
            vis = now + retry_delay_ms(config.backoff if config else None, claim.attempt)
    output, record = attempt.output, attempt.result
    apply(tr, claim, found, action, now, vis, error, tally, extension, output, limit, record)
    return action.outcome


def _settle_all(
    tr: Transaction, attempts: Sequence[Attempt], at_ms: int | None = None
) -> list[Outcome]:
    now = now_ms() if at_ms is None else at_ms
    tally = Tally()
    outcomes = []
    claims = [attempt.claim for attempt in attempts]
    found = standings(tr, claims)
    prefetch(tr, claims, settling=True)  # e.g. every workflow step's records at once
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
    """Record many attempts in one transaction (more when their results are large);
    their outcomes, in order.

    Each success's output is stored as its job's result (:func:`with_result`); one
    that cannot be stored fails its attempt. A lost lease loses only its own attempt.
    If any attempt cannot be recorded (an extension refuses its output, say), nothing
    of the batch is written and each is settled on its own, so that one fails alone.
    ``now_ms`` is the clock retries and snoozes count from (the wall clock by default;
    :func:`quick.testing.drain` passes its simulated one).
    """
    if not attempts:
        return []
    outcomes: list[Outcome] = []
    for run in _by_size([with_result(attempt) for attempt in attempts]):
        outcomes += _settle_run(db, run, now_ms)
    return outcomes


def _settle_run(db: Database, attempts: Sequence[Attempt], at_ms: int | None) -> list[Outcome]:
    try:
        return db.transact(_settle_all, attempts, at_ms)
    except StorageError:
        raise
    except QuickError:
        return [_settle_alone(db, attempt, at_ms) for attempt in attempts]


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

    ``output`` is the handler's return value: the job's result (:func:`quick.result`),
    and what a job extension (a workflow step) records.
    """
    return _settle_alone(db, with_result(Attempt(claim, config, error, output)))


def run_claim(db: Database, app: App, claim: Claim) -> Outcome:
    """Run a synchronous handler for ``claim`` and record its outcome.

    A transactional handler (``handler(tr, payload, meta)``) runs inside the
    transaction that completes the job, so its writes commit exactly once with it.
    """
    config = job_config(app, claim)
    if config is not None and config.is_async:
        raise TypeError(f"{claim.topic}: async handlers run in the consumer runtime")
    done = run_attempt(db, claim, config)
    return done if isinstance(done, Outcome) else _settle_alone(db, with_result(done))


def run_transactional(tr: Transaction, config: JobConfig, claim: Claim, meta: Meta) -> Any:
    """A transactional handler and its job's completion, as one transaction body.

    The handler runs only while the claim holds the job; when an earlier try of this
    transaction committed the handler and the completion, nothing runs again.

    Raises:
        LeaseLost: the claim no longer holds the job; nothing ran.
        JobCancelled: the job carries the cancel mark; nothing ran.
        InvalidPayload / InvalidArgument: the output cannot be stored as the job's
            result, or the job's extension cannot store it (or cannot be loaded);
            raised inside ``tr``, so nothing commits.
    """
    found = standing(tr, claim)
    extension = resolve(claim.extension)
    action = decide(claim, found, Ending.SUCCEEDED, extended=extension is not None)
    if action.act is Act.LOST:
        raise lost(claim, found)
    if action.outcome is Outcome.CANCELLED:
        raise JobCancelled(claim.job_id)  # nothing runs; settling it records the cancel
    if action.act is Act.DONE:
        return None
    output = invoke(config.handler, meta, tr, claim.payload, meta)
    if isinstance(extension, Refused):
        raise extension.error
    record = encode_result(output)  # one that cannot be stored fails the attempt
    apply(tr, claim, found, action, now_ms(), extension=extension, output=output, result=record)
    return output


def _call(config: JobConfig, payload: Any, meta: Meta) -> Any:
    return invoke(config.handler, meta, payload, meta)


def run_attempt(
    db: Database,
    claim: Claim,
    config: JobConfig | None,
    call: Callable[[JobConfig, Any, Meta], Any] = _call,
    signals: JobSignals | None = None,
) -> Attempt | Outcome:
    """Run one claim's handler in this thread: the attempt to record (with
    :func:`settle_batch`), or the outcome when it is recorded already (a transactional
    handler completes its job itself; a lost lease records nothing).

    ``call`` runs a plain handler (``consumer.lanes`` calls it directly;
    ``quick.testing`` runs async ones under trio); ``signals`` is what the handler's
    ``meta`` shares with the worker (cancellation, progress). A job cancelled before
    it starts does not start: its attempt ends with :class:`JobCancelled`.
    """
    if config is None:
        return Attempt(claim, None)  # settles as "no handler"
    if claim.cancel_requested or (signals is not None and signals.cancelled):
        return Attempt(claim, config, JobCancelled(claim.job_id))
    meta = meta_for(claim, signals)
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
