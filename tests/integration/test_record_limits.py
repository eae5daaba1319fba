"""Job records near the value limit: enqueue keeps headroom for what a claim and a dead
letter add, and a record stored before that rule is dead-lettered without a write over
the limit and without losing its payload."""

from __future__ import annotations

import pytest

import quick
from keyspace.layout import DEAD_LETTERS, QueueKeys
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick.checking import check_deep
from quick.inspection import BARE_DEAD_LETTER, decode_dead_letter
from quick.jobs import Job
from quick.records import JOB_RECORD_HEADROOM, MAX_ERROR_BYTES, MAX_JOB_RECORD_BYTES
from quick.validation import MAX_NAME_BYTES

T0 = 1_800_000_000_000


@pytest.fixture
def queue(space: Subspace) -> str:
    """A queue name unique to the test (the fdb engine shares one cluster)."""
    return f"q-{space.prefix[1][:12]}"


def sized_payload(queue: str, size: int) -> str:
    """A text payload whose enqueued job record (id ``big``, now ``T0``) is ``size`` bytes."""
    job = quick.enqueueing.prepare(queue, "t", "", job_id="big", now=T0).job
    base = len(job.to_value())
    payload = "x" * (size - base - 4)  # str32 header: 4 bytes more than the empty fixstr's
    assert len(job.evolve(payload=payload).to_value()) == size
    return payload


def stored_values(db: Database) -> list[bytes]:
    return [value for _, value in db.transact(lambda tr: tr.get_range(b"", b"\xff"))]


def dead_letter(db: Database, queue: str, job_id: str) -> tuple[int, quick.DeadLetter]:
    value = db.transact(lambda tr: tr.get(DEAD_LETTERS.pack((queue, job_id))))
    assert value is not None
    return len(value), decode_dead_letter(queue, job_id, value)


def test_record_limit_enqueue_refuses_a_record_without_headroom_naming_both_sizes(
    db: Database, queue: str
) -> None:
    over = sized_payload(queue, MAX_JOB_RECORD_BYTES + 1)
    with pytest.raises(quick.InvalidArgument) as refused:
        quick.enqueue(db, queue, "t", over, job_id="big")
    assert refused.value.field == "payload"
    assert f"{MAX_JOB_RECORD_BYTES + 1}-byte" in str(refused.value)
    assert f"the limit is {MAX_JOB_RECORD_BYTES}" in str(refused.value)
    assert quick.queue_counts(db, queue)["ready"] == 0
    assert MAX_JOB_RECORD_BYTES == VALUE_LIMIT - JOB_RECORD_HEADROOM


def test_record_limit_largest_job_survives_leases_failures_and_its_dead_letter(
    db: Database, queue: str
) -> None:
    payload = sized_payload(queue, MAX_JOB_RECORD_BYTES)
    quick.enqueue(db, queue, "t", payload, job_id="big", max_attempts=2)
    owner = "w" * MAX_NAME_BYTES
    huge_error = "é" * MAX_ERROR_BYTES  # two bytes each: cut to MAX_ERROR_BYTES
    now = T0 + 1
    for attempt in (1, 2):
        (claim,) = quick.claim(db, queue, owner, now_ms=now)
        assert claim.attempt == attempt
        assert claim.payload == payload
        assert max(map(len, stored_values(db))) <= VALUE_LIMIT
        quick.fail(db, claim, huge_error, delay_ms=0, now_ms=now)
        now += 1
    size, dead = dead_letter(db, queue, "big")
    assert size <= VALUE_LIMIT
    assert dead.job is not None
    assert dead.job.payload == payload
    assert dead.error.startswith("é")  # the full form: record and error both kept


def write_record(db: Database, queue: str, size: int) -> str:
    """Enqueue a small job ``big``, then grow its stored record to ``size`` bytes directly
    through the engine, as a store written before enqueue kept headroom may hold it."""
    quick.enqueue(db, queue, "t", "small", job_id="big")
    value = db.transact(lambda tr: tr.get(QueueKeys(queue).job("big")))
    assert value is not None
    old = Job.from_value(queue, "big", value)
    payload = "x" * (size - len(old.evolve(payload="").to_value()) - 4)
    grown = old.evolve(payload=payload).to_value()
    assert len(grown) == size
    db.transact(lambda tr: tr.set(QueueKeys(queue).job("big"), grown))
    return payload


@pytest.mark.parametrize(("size", "form"), [(VALUE_LIMIT, "bare"), (VALUE_LIMIT - 250, "full")])
def test_record_limit_claim_dead_letters_a_stored_record_that_cannot_be_leased(
    db: Database, queue: str, size: int, form: str
) -> None:
    payload = write_record(db, queue, size)
    assert quick.claim(db, queue, "w" * MAX_NAME_BYTES) == []  # no value_too_large
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 0, "leased": 0, "dead": 1}
    stored, dead = dead_letter(db, queue, "big")
    assert stored <= VALUE_LIMIT
    assert dead.job is not None
    assert dead.job.payload == payload
    if form == "bare":
        assert dead.error == BARE_DEAD_LETTER
    else:
        assert "would grow to" in dead.error
    assert check_deep(db).problems == []
    # Replaying it is refused cleanly (it has no headroom), and the dead letter stays.
    with pytest.raises(quick.InvalidArgument):
        quick.requeue_dead(db, queue, "big")
    assert quick.queue_counts(db, queue)["dead"] == 1


def test_record_limit_failure_too_large_to_wrap_keeps_the_stored_record_raw(
    db: Database, queue: str
) -> None:
    payload = write_record(db, queue, VALUE_LIMIT - 3_000)
    (claim,) = quick.claim(db, queue, "w")
    assert quick.fail(db, claim, "boom " * 1_000, max_attempts=1) == "dead_lettered"
    stored, dead = dead_letter(db, queue, "big")
    assert stored <= VALUE_LIMIT
    assert dead.job is not None
    assert dead.job.payload == payload
    assert dead.error.startswith("boom")
    assert "kept as stored" in dead.error
    assert check_deep(db).problems == []
