"""The queue's behaviour on every engine: ordering, visibility, leases, outcomes, control."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import quick
from keyspace.layout import QueueKeys
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from quick import JobState, Outcome
from quick.claiming import claim_jobs

T0 = 1_800_000_000_000  # a fixed clock for lease and visibility tests


@pytest.fixture
def queue(space: Subspace) -> str:
    """A queue name unique to the test (the fdb engine shares one cluster)."""
    return f"q-{space.prefix[1][:12]}"


def drain(db: Database, queue: str, *, now: int | None = None, limit: int = 10) -> list[Any]:
    """Claim and complete until nothing is visible; the payloads in claim order."""
    seen = []
    while claims := quick.claim(db, queue, "drainer", limit=limit, now_ms=now):
        for claim in claims:
            seen.append(claim.payload)
            quick.complete(db, claim)
    return seen


# -- ordering and visibility ------------------------------------------------------------


def test_queue_orders_by_priority_then_visibility_then_fifo(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "late-low", priority=100)
    for i in range(3):
        quick.enqueue(db, queue, "t", f"fifo-{i}", priority=50)
    quick.enqueue(db, queue, "t", "urgent", priority=1)
    quick.enqueue(db, queue, "t", "past", priority=50, at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert drain(db, queue, limit=2) == ["urgent", "past", "fifo-0", "fifo-1", "fifo-2", "late-low"]


def test_queue_delayed_jobs_become_visible_at_their_time(db: Database, queue: str) -> None:
    now = quick.jobs.now_ms()
    job = quick.enqueue(db, queue, "t", "later", delay=dt.timedelta(seconds=60))
    quick.enqueue(db, queue, "t", "now")
    assert quick.job_state(db, job) is JobState.SCHEDULED
    assert drain(db, queue, now=now + 1_000) == ["now"]
    assert drain(db, queue, now=now + 61_000) == ["later"]


def test_queue_ready_job_is_never_hidden_behind_future_jobs(db: Database, queue: str) -> None:
    quick.enqueue_many(
        db,
        [
            {"queue_id": queue, "topic": "t", "payload": i, "priority": 0, "delay": 3600}
            for i in range(300)
        ],
    )
    quick.enqueue(db, queue, "t", "ready", priority=100)
    claims = quick.claim(db, queue, "w", limit=1)
    assert [c.payload for c in claims] == ["ready"]


# -- leases -------------------------------------------------------------------------------


def test_lease_expiry_redelivers_with_the_next_attempt(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job")
    (first,) = quick.claim(db, queue, "a", lease_ms=1_000, now_ms=T0)
    assert first.attempt == 1
    assert first.lease_until_ms == T0 + 1_000
    assert quick.claim(db, queue, "b", now_ms=T0 + 999) == []
    (second,) = quick.claim(db, queue, "b", lease_ms=1_000, now_ms=T0 + 1_001)
    assert (second.job_id, second.attempt, second.owner) == (first.job_id, 2, "b")
    with pytest.raises(quick.LeaseLost):
        quick.complete(db, first)
    with pytest.raises(quick.LeaseLost):
        quick.heartbeat(db, first, now_ms=T0 + 1_002)
    quick.complete(db, second)
    assert quick.job_state(db, first.job_id) is JobState.COMPLETED


def test_lease_heartbeat_extends_and_keeps_others_out(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job")
    (held,) = quick.claim(db, queue, "a", lease_ms=1_000, now_ms=T0)
    renewed = quick.heartbeat(db, held, lease_ms=5_000, now_ms=T0 + 900)
    assert renewed.lease_until_ms == T0 + 5_900
    assert quick.claim(db, queue, "b", now_ms=T0 + 2_000) == []
    quick.complete(db, renewed)


def test_lease_expired_but_unclaimed_can_still_complete(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job")
    (held,) = quick.claim(db, queue, "a", lease_ms=1_000, now_ms=T0)
    quick.complete(db, held)
    assert quick.queue_counts(db, queue)["leased"] == 0


def test_fencing_failed_claim_cannot_be_completed_or_failed_again(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job")
    (held,) = quick.claim(db, queue, "a", now_ms=T0)
    assert quick.fail(db, held, "boom", now_ms=T0) == "requeued"
    with pytest.raises(quick.LeaseLost):
        quick.complete(db, held)
    with pytest.raises(quick.LeaseLost):
        quick.heartbeat(db, held, now_ms=T0)


def test_complete_retried_after_commit_succeeds_for_the_same_claim(
    db: Database, queue: str
) -> None:
    quick.enqueue(db, queue, "t", "job")
    (held,) = quick.claim(db, queue, "a")
    quick.complete(db, held)
    quick.complete(db, held)
    assert quick.job_state(db, held.job_id) is JobState.COMPLETED


def test_claim_retried_after_its_commit_applied_returns_the_jobs_it_leased(
    db: Database, queue: str
) -> None:
    # What run_transaction does when the second claim step's commit applies and then
    # reports commit_unknown_result (1021): the same body, same token, runs again. Here
    # another consumer claims from the queue between the commit and the retry.
    for n in range(6):
        quick.enqueue(db, queue, "t", n)
    token = "a-token"
    committed = db.transact(claim_jobs, queue, "a", T0, 2, 30_000, token)
    rival = quick.claim(db, queue, "b", limit=2, now_ms=T0)
    assert len(committed) == len(rival) == 2
    retried = db.transact(claim_jobs, queue, "a", T0, 2, 30_000, token)
    leased_to_a = {job.id for job in quick.list_jobs(db, queue, limit=10) if job.owner == "a"}
    assert {c.job_id for c in retried} == {c.job_id for c in committed} == leased_to_a


# -- retries, dead letters, snooze, discard --------------------------------------------------


def test_fail_backs_off_then_dead_letters_with_the_last_error(db: Database, queue: str) -> None:
    job = quick.enqueue(db, queue, "t", "job", max_attempts=3)
    now = T0
    delays = []
    for attempt in (1, 2):
        (held,) = quick.claim(db, queue, "w", now_ms=now)
        assert held.attempt == attempt
        result = quick.fail(
            db, held, f"error {attempt}", base_delay_ms=1_000, max_delay_ms=1_500, now_ms=now
        )
        assert result == "requeued"
        stored = quick.get_job(db, job)
        assert stored is not None
        assert stored.last_error == f"error {attempt}"
        delays.append(stored.vis_ms - now)
        assert quick.claim(db, queue, "w", now_ms=now) == []
        now = stored.vis_ms
    assert 500 <= delays[0] <= 1_000
    assert 750 <= delays[1] <= 1_500
    (held,) = quick.claim(db, queue, "w", now_ms=now)
    assert quick.fail(db, held, "final", now_ms=now) == "dead_lettered"
    assert quick.job_state(db, job) is JobState.DEAD
    (dead,) = quick.list_dead(db, queue)
    assert (dead.job_id, dead.error) == (job, "final")
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 0, "leased": 0, "dead": 1}


def test_dead_letters_requeue_and_purge(db: Database, queue: str) -> None:
    job = quick.enqueue(db, queue, "t", {"x": 1}, max_attempts=1)
    (held,) = quick.claim(db, queue, "w")
    assert quick.fail(db, held, "nope") == "dead_lettered"
    assert quick.requeue_dead(db, queue, job) == job
    assert quick.list_dead(db, queue) == []
    (again,) = quick.claim(db, queue, "w")
    assert (again.payload, again.attempt) == ({"x": 1}, 1)
    assert quick.fail(db, again, "still no") == "dead_lettered"
    assert quick.purge_dead(db, queue) == 1
    assert quick.list_dead(db, queue) == []
    assert quick.queue_counts(db, queue)["dead"] == 0
    with pytest.raises(quick.JobNotFound):
        quick.requeue_dead(db, queue, job)


def test_snooze_reschedules_without_using_an_attempt(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job", max_attempts=1)
    (held,) = quick.claim(db, queue, "w", now_ms=T0)
    quick.snooze(db, held, 30, now_ms=T0)
    assert quick.claim(db, queue, "w", now_ms=T0 + 29_000) == []
    (again,) = quick.claim(db, queue, "w", now_ms=T0 + 30_000)
    assert again.attempt == 1
    quick.complete(db, again)


def test_release_makes_an_unstarted_claim_visible_at_once(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job")
    (held,) = quick.claim(db, queue, "a", now_ms=T0)
    quick.release(db, held, now_ms=T0)
    (again,) = quick.claim(db, queue, "b", now_ms=T0)
    assert (again.job_id, again.attempt) == (held.job_id, 1)


# -- handlers and outcomes ---------------------------------------------------------------------


def _app(calls: list[Any]) -> quick.App:
    app = quick.App()

    @app.job("ok")
    def ok(payload: Any, meta: quick.Meta) -> None:
        calls.append((payload, meta.attempt, meta.topic))

    @app.job("flaky", max_attempts=2, backoff=(0.001, 0.001))
    def flaky(payload: Any, meta: quick.Meta) -> None:
        raise RuntimeError(f"attempt {meta.attempt}")

    @app.job("sleepy")
    def sleepy(payload: Any, meta: quick.Meta) -> None:
        raise quick.Snooze(60)

    @app.job("pointless")
    def pointless(payload: Any, meta: quick.Meta) -> None:
        raise quick.Discard("not needed")

    return app


def test_outcomes_follow_what_the_handler_does(db: Database, queue: str) -> None:
    calls: list[Any] = []
    app = _app(calls)
    ids = {t: app.enqueue(db, queue, t, t) for t in ("ok", "flaky", "sleepy", "pointless")}
    rogue = quick.enqueue(db, queue, "nobody:home", "lost")
    outcomes = {}
    for claim in quick.claim(db, queue, "w", limit=10, now_ms=T0):
        outcomes[claim.topic] = quick.run_claim(db, app, claim)
    assert outcomes == {
        "ok": Outcome.COMPLETED,
        "flaky": Outcome.REQUEUED,
        "sleepy": Outcome.SNOOZED,
        "pointless": Outcome.DISCARDED,
        "nobody:home": Outcome.DEAD_LETTERED,
    }
    assert calls == [("ok", 1, "ok")]
    assert quick.job_state(db, ids["pointless"]) is JobState.DISCARDED
    assert quick.job_state(db, ids["sleepy"]) is JobState.SCHEDULED
    dead = {d.job_id: d.error for d in quick.list_dead(db, queue)}
    assert "unknown topic 'nobody:home'" in dead[rogue]
    (retry,) = quick.claim(db, queue, "w", now_ms=T0 + 1_000)
    assert retry.topic == "flaky"
    assert quick.run_claim(db, app, retry) is Outcome.DEAD_LETTERED
    dead = {d.job_id: d.error for d in quick.list_dead(db, queue)}
    assert dead[ids["flaky"]] == "RuntimeError: attempt 2"


def test_transactional_handler_commits_its_writes_with_the_completion(
    db: Database, queue: str, space: Subspace
) -> None:
    app = quick.App()
    ledger = space.pack(("ledger",))

    @app.job("book")
    def book(tr: Transaction, payload: Any, meta: quick.Meta) -> None:
        current = int(tr.get(ledger) or b"0")
        tr.set(ledger, str(current + payload).encode())

    for amount in (5, 7):
        app.enqueue(db, queue, "book", amount)
    for claim in quick.claim(db, queue, "w", limit=5):
        assert quick.run_claim(db, app, claim) is Outcome.COMPLETED
    assert db.transact(lambda tr: tr.get(ledger)) == b"12"
    assert quick.queue_counts(db, queue)["leased"] == 0


# -- transactional enqueue, idempotency ----------------------------------------------------


def test_enqueue_rolls_back_with_the_callers_transaction(
    exact_db: Database, space: Subspace
) -> None:
    queue = f"q-{space.prefix[1][:12]}"
    order = space.pack(("order",))

    def place(tr: Transaction, fail: bool) -> str:
        tr.set(order, b"placed")
        job = quick.enqueue(tr, queue, "ship", {"order": 1})
        if fail:
            raise RuntimeError("payment declined")
        return job

    with pytest.raises(RuntimeError):
        exact_db.transact(place, True)
    assert exact_db.transact(lambda tr: tr.get(order)) is None
    assert quick.claim(exact_db, queue, "w") == []
    job = exact_db.transact(place, False)
    (claim,) = quick.claim(exact_db, queue, "w")
    assert claim.job_id == job


def test_enqueue_with_job_id_or_unique_key_is_idempotent(db: Database, queue: str) -> None:
    first = quick.enqueue(db, queue, "t", "a", job_id="order-42")
    assert quick.enqueue(db, queue, "t", "b", job_id="order-42") == "order-42"
    held = quick.enqueue(db, queue, "t", "c", unique_key="sync:7")
    assert quick.enqueue(db, queue, "t", "d", unique_key="sync:7") == held
    assert sum(quick.queue_counts(db, queue).values()) == 2
    payloads = drain(db, queue)
    assert sorted(payloads) == ["a", "c"]
    assert quick.enqueue(db, queue, "t", "e", job_id=first) == first
    assert quick.enqueue(db, queue, "t", "f", unique_key="sync:7") != held


def test_enqueue_many_is_one_transaction(db: Database, queue: str) -> None:
    ids = quick.enqueue_many(
        db, [{"queue_id": queue, "topic": "t", "payload": i, "priority": 10 - i} for i in range(5)]
    )
    assert len(set(ids)) == 5
    assert drain(db, queue) == [4, 3, 2, 1, 0]


# -- inspection and control -------------------------------------------------------------------


def test_counts_and_states_track_each_job(db: Database, queue: str) -> None:
    later = quick.enqueue(db, queue, "t", 1, delay=600)
    ready = quick.enqueue(db, queue, "t", 2)
    assert quick.queue_counts(db, queue) == {"scheduled": 1, "ready": 1, "leased": 0, "dead": 0}
    (held,) = quick.claim(db, queue, "w")
    assert quick.job_state(db, ready) is JobState.LEASED
    assert quick.queue_counts(db, queue) == {"scheduled": 1, "ready": 0, "leased": 1, "dead": 0}
    assert quick.cancel(db, later) is True
    assert quick.job_state(db, later) is JobState.CANCELLED
    assert quick.cancel(db, held.job_id) is True  # running: marked, it ends when settled
    assert quick.job_state(db, held.job_id) is JobState.LEASED
    quick.complete(db, held)
    assert quick.job_state(db, held.job_id) is JobState.CANCELLED  # not completed
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 0, "leased": 0, "dead": 0}
    assert quick.job_state(db, "no-such-job") is None
    assert quick.cancel(db, "no-such-job") is False
    listed = {q["queue"] for q in quick.list_queues(db)}
    assert queue in listed


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "kind"),
    [
        ({"payload": {"when": object()}}, "payload", TypeError),
        ({"payload": "x" * 100_001}, "payload", ValueError),
        ({"queue_id": ""}, "queue_id", ValueError),
        ({"queue_id": "q" * 300}, "queue_id", ValueError),
        ({"topic": "  "}, "topic", ValueError),
        ({"delay": -1}, "delay", ValueError),
        ({"at": dt.datetime(2030, 1, 1)}, "at", ValueError),
        ({"max_attempts": 0}, "max_attempts", ValueError),
        ({"priority": "high"}, "priority", ValueError),
    ],
)
def test_bad_input_is_refused_by_name_and_writes_nothing(
    db: Database, queue: str, kwargs: dict[str, Any], field: str, kind: type[Exception]
) -> None:
    args: dict[str, Any] = {"queue_id": queue, "topic": "t", "payload": "ok"}
    args.update(kwargs)
    with pytest.raises(kind) as caught:
        quick.enqueue(db, args.pop("queue_id"), args.pop("topic"), args.pop("payload"), **args)
    assert isinstance(caught.value, quick.QuickError)
    assert getattr(caught.value, "field", None) == field
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 0, "leased": 0, "dead": 0}


def test_corrupt_job_met_by_a_claim_is_dead_lettered(db: Database, queue: str) -> None:
    bad = quick.enqueue(db, queue, "t", "will rot")
    good = quick.enqueue(db, queue, "t", "fine")
    db.transact(lambda tr: tr.set(QueueKeys(queue).job(bad), b"\x01\xc1garbage"))
    claims = quick.claim(db, queue, "w", limit=5)
    assert [c.job_id for c in claims] == [good]
    (dead,) = quick.list_dead(db, queue)
    assert dead.job_id == bad
    assert "corrupt job record" in dead.error
    assert dead.raw == b"\x01\xc1garbage"
    assert quick.job_state(db, bad) is JobState.DEAD


# -- regressions from review --------------------------------------------------------------


def test_requeue_dead_refuses_while_its_unique_key_is_held(db: Database, queue: str) -> None:
    dead_id = quick.enqueue(db, queue, "t", "first", unique_key="U", max_attempts=1)
    (held,) = quick.claim(db, queue, "w")
    assert quick.fail(db, held, "boom") == "dead_lettered"
    holder = quick.enqueue(db, queue, "t", "second", unique_key="U")
    with pytest.raises(quick.InvalidArgument) as caught:
        quick.requeue_dead(db, queue, dead_id)
    assert caught.value.field == "unique_key"
    assert [d.job_id for d in quick.list_dead(db, queue)] == [dead_id]
    assert quick.job_state(db, dead_id) is JobState.DEAD
    assert quick.job_state(db, holder) is JobState.READY


def test_requeue_dead_and_cancel_repeated_report_their_effect(db: Database, queue: str) -> None:
    job = quick.enqueue(db, queue, "t", "x", max_attempts=1)
    (held,) = quick.claim(db, queue, "w")
    quick.dead_letter(db, held, "poison")
    assert quick.requeue_dead(db, queue, job) == job
    assert quick.requeue_dead(db, queue, job) == job
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 1, "leased": 0, "dead": 0}
    assert quick.cancel(db, job) is True
    assert quick.cancel(db, job) is True
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 0, "leased": 0, "dead": 0}


def test_names_with_lone_surrogates_are_refused_before_any_write(
    exact_db: Database, space: Subspace
) -> None:
    queue = f"q-{space.prefix[1][:12]}"

    def batch(tr: Transaction) -> None:
        with pytest.raises(quick.InvalidArgument) as caught:
            quick.enqueue_many(
                tr,
                [
                    {"queue_id": queue, "topic": "t", "payload": 1},
                    {"queue_id": queue, "topic": "t", "payload": 2, "job_id": "bad\udc80"},
                ],
            )
        assert caught.value.field == "job_id"

    exact_db.transact(batch)
    assert quick.queue_counts(exact_db, queue)["ready"] == 0
    assert quick.claim(exact_db, queue, "w") == []


def test_heartbeat_shortening_a_lease_brings_the_job_back_sooner(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job")
    (held,) = quick.claim(db, queue, "a", lease_ms=60_000, now_ms=T0)
    quick.heartbeat(db, held, lease_ms=1_000, now_ms=T0)
    (again,) = quick.claim(db, queue, "b", now_ms=T0 + 2_000)
    assert again.job_id == held.job_id


def test_bad_clock_values_are_refused_before_any_write(db: Database, queue: str) -> None:
    quick.enqueue(db, queue, "t", "job", max_attempts=1)
    (held,) = quick.claim(db, queue, "w")
    with pytest.raises(quick.InvalidArgument) as caught:
        quick.dead_letter(db, held, "r", now_ms=object())  # type: ignore[arg-type]
    assert caught.value.field == "now_ms"
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 0, "leased": 1, "dead": 0}
    quick.complete(db, held)
