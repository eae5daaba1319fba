"""Settling the same attempt twice, as a retry after ``commit_unknown_result`` does: the
second settlement writes nothing and answers as the first did, read from the store (the
table's ``ALREADY`` rows), for plain jobs and for jobs with an extension alike."""

from __future__ import annotations

from typing import Any

import pytest

import quick
from keyspace.protocol import Transaction
from quick import extensions
from quick.app import JobConfig
from quick.enqueueing import prepare, store_new
from quick.jobs import Claim
from quick.outcomes import Outcome, settle

MODULE = "tests.integration.test_settle_again"


class Recorder:
    """A job extension that records the hooks the queue calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def job_config(self, claim: Claim, registered: JobConfig | None) -> JobConfig | None:
        return registered

    def context(self, claim: Claim) -> Any:
        return None

    def on_claimed(self, tr: Transaction, claim: Claim, now: int) -> None:
        self.calls.append(("claimed", claim.attempt))

    def on_succeeded(self, tr: Transaction, claim: Claim, output: Any, now: int) -> None:
        self.calls.append(("succeeded", output))

    def on_failed(
        self,
        tr: Transaction,
        claim: Claim,
        error: str,
        retry_at_ms: int | None,
        now: int,
        max_attempts: int,
    ) -> None:
        self.calls.append(("failed", retry_at_ms is None, max_attempts))


@pytest.fixture
def recorder() -> Recorder:
    found = Recorder()
    extensions.register(MODULE, found)
    return found


def _claim(db: quick.Database, *, extended: bool, max_attempts: int | None = None) -> Claim:
    data = {"mod": MODULE} if extended else None
    job = prepare("q", "t", {"n": 1}, max_attempts=max_attempts, extension=data)
    db.transact(lambda tr: store_new(tr, job))
    (claim,) = quick.claim(db, "q", "w")
    return claim


CONFIG = JobConfig(topic="t", handler=lambda payload, meta: None)


@pytest.mark.parametrize(
    ("error", "max_attempts", "outcome", "hook"),
    [
        (None, None, Outcome.COMPLETED, ("succeeded", "out")),
        (RuntimeError("boom"), 1, Outcome.FAILED, ("failed", True, 1)),
        (RuntimeError("boom"), 3, Outcome.REQUEUED, ("failed", False, 3)),
        (quick.Snooze(60), None, Outcome.SNOOZED, None),
        (quick.Discard("no"), None, Outcome.FAILED, ("failed", True, 5)),
    ],
)
def test_settle_again_extended_answers_as_the_first_settlement(
    db: quick.Database,
    recorder: Recorder,
    error: BaseException | None,
    max_attempts: int | None,
    outcome: Outcome,
    hook: tuple[Any, ...] | None,
) -> None:
    claim = _claim(db, extended=True, max_attempts=max_attempts)
    recorder.calls.clear()
    assert settle(db, claim, CONFIG, error, "out") is outcome
    first = len(recorder.calls)
    assert settle(db, claim, CONFIG, error, "out") is outcome
    assert len(recorder.calls) == first  # the second settlement calls no hook
    # The hooks run inside the settling transaction, once per try of it (retries after
    # injected faults repeat them); the second settlement adds no call of its own kind.
    assert set(recorder.calls) == ({hook} if hook is not None else set())


@pytest.mark.parametrize(
    ("error", "max_attempts", "outcome"),
    [
        (None, None, Outcome.COMPLETED),
        (RuntimeError("boom"), 1, Outcome.DEAD_LETTERED),
        (RuntimeError("boom"), 3, Outcome.REQUEUED),
        (quick.Snooze(60), None, Outcome.SNOOZED),
        (quick.Discard("no"), None, Outcome.DISCARDED),
    ],
)
def test_settle_again_plain_answers_as_the_first_settlement(
    db: quick.Database, error: BaseException | None, max_attempts: int | None, outcome: Outcome
) -> None:
    claim = _claim(db, extended=False, max_attempts=max_attempts)
    assert settle(db, claim, CONFIG, error) is outcome
    counts = quick.queue_counts(db, "q")
    assert settle(db, claim, CONFIG, error) is outcome
    assert quick.queue_counts(db, "q") == counts


def test_settle_again_a_different_ending_is_a_lost_lease(
    db: quick.Database, recorder: Recorder
) -> None:
    claim = _claim(db, extended=True, max_attempts=3)
    assert settle(db, claim, CONFIG, RuntimeError("boom")) is Outcome.REQUEUED
    assert settle(db, claim, CONFIG, None) is Outcome.LEASE_LOST
    with pytest.raises(quick.LeaseLost, match="already put it back"):
        quick.complete(db, claim)
