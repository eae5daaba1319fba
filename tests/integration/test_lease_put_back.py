"""A held claim after its job was put back (release, fail, snooze) and made ready again by
another consumer's claim can neither complete nor heartbeat the job.
"""

from __future__ import annotations

import uuid

import pytest

import quick
from keyspace.protocol import Database
from quick.enqueueing import prepare, store_new
from quick.jobs import Claim, JobState
from tests.integration.pointer_store import T0

# -- a held claim after its job was put back (found while building the race harness) -------


def _put_back_then_promoted(db: Database, put_back: str) -> Claim:
    """A claim whose job was put back, then made ready again by another consumer's claim."""
    queue = f"putback-{uuid.uuid4().hex[:8]}"
    job = prepare(queue, "t", "job", now=T0)
    db.transact(lambda tr: store_new(tr, job))
    (held,) = quick.claim(db, queue, "a", now_ms=T0)
    if put_back == "release":
        quick.release(db, held, now_ms=T0)
    elif put_back == "fail":
        assert quick.fail(db, held, "boom", delay_ms=1, now_ms=T0) == "requeued"
    else:
        quick.snooze(db, held, 0.001, now_ms=T0)
    urgent = prepare(queue, "t", "urgent", priority=0, now=T0 + 5)
    db.transact(lambda tr: store_new(tr, urgent))
    (other,) = quick.claim(db, queue, "b", limit=1, now_ms=T0 + 5)
    assert other.payload == "urgent"
    assert quick.job_state(db, held.job_id) is JobState.READY
    return held


PUT_BACK_DIAGNOSIS = (
    "put-backs (release, fail, snooze) keep the job's token and clear its owner, but "
    "leases._held() refuses only a job in state SCHEDULED: once the job is READY again "
    "(at once after release; after any claim's promotion after fail/snooze) the old "
    "claim passes the token fence"
)


@pytest.mark.parametrize("put_back", ["release", "fail", "snooze"])
def test_lease_claim_put_back_cannot_complete_the_job_later(db: Database, put_back: str) -> None:
    held = _put_back_then_promoted(db, put_back)
    with pytest.raises(quick.LeaseLost):
        quick.complete(db, held)
    assert quick.job_state(db, held.job_id) is JobState.READY


@pytest.mark.parametrize("put_back", ["release", "fail", "snooze"])
def test_lease_claim_put_back_cannot_heartbeat_the_job_later(db: Database, put_back: str) -> None:
    held = _put_back_then_promoted(db, put_back)
    with pytest.raises(quick.LeaseLost):
        quick.heartbeat(db, held, now_ms=T0 + 10)
    assert quick.job_state(db, held.job_id) is JobState.READY
