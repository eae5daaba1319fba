"""A claim round's reads issued together: the job indexes and job records of the queues
it visits are read ahead, as snapshot reads, once per chunk of queues. What each claim
depends on must still conflict (a job written into a visited queue's indexes), what it
does not read must not (a queue the round never visited), and a claim that writes to
another queue makes the round read that queue afresh."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import quick
from keyspace.layout import QueueKeys
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database
from keyspace.retry import Tries
from keyspace.subspace import Subspace
from quick import pointers
from quick.claim_rounds import ClaimRound, claim_round
from quick.jobs import Job
from tests.integration.conflicts import commits

NOW = 1_900_000_000_000
LEASE_MS = 30_000


@pytest.fixture
def prefix(space: Subspace) -> str:
    """Queue names unique to the test (the fdb engine shares one cluster)."""
    return f"r{space.prefix[1][:8]}-"


def _one_job_queues(db: Database, names: list[str]) -> None:
    quick.enqueue_many(db, [{"queue_id": name, "topic": "t", "payload": 0} for name in names])


def _start_round(db: Database, limit: int, seed: int = 0) -> tuple[object, ClaimRound]:
    tr = db.create_transaction()
    found = claim_round(
        tr, "c1", NOW, limit=limit, lease_ms=LEASE_MS, tries=Tries(), rng=random.Random(seed),
        watch=False,
    )  # fmt: skip
    return tr, found


def test_claim_round_conflicts_with_a_job_enqueued_into_a_queue_it_claimed_from(
    exact_db: Database, prefix: str
) -> None:
    """Three one-job queues, one round takes all three jobs (their indexes read
    together); a job enqueued into one of them commits first: the round must retry."""
    names = [f"{prefix}{i}" for i in range(3)]
    _one_job_queues(exact_db, names)
    tr, found = _start_round(exact_db, limit=10)
    assert sorted(c.queue_id for c in found.claims) == names
    quick.enqueue(exact_db, names[2], "t", "late")
    assert commits(tr) is False  # type: ignore[arg-type]


def test_claim_round_does_not_conflict_on_a_queue_it_did_not_visit(
    exact_db: Database, prefix: str
) -> None:
    """A batch of two from eight one-job queues: the round reads ahead the two queues of
    its chunk only, so a job enqueued into any of the other six does not conflict."""
    names = [f"{prefix}{i}" for i in range(8)]
    _one_job_queues(exact_db, names)
    tr, found = _start_round(exact_db, limit=2)
    visited = {c.queue_id for c in found.claims}
    assert len(visited) == 2
    for name in sorted(set(names) - visited):
        quick.enqueue(exact_db, name, "t", "other")
    assert commits(tr) is True  # type: ignore[arg-type]


def _grow_to_the_limit(db: Database, queue: str, job_id: str) -> None:
    """Grow a stored job record to the value limit, as a store written before enqueue kept
    headroom may hold it: its claim then dead-letters it (its leased record is too big)."""
    key = QueueKeys(queue).job(job_id)
    value = db.transact(lambda tr: tr.get(key))
    assert value is not None
    old = Job.from_value(queue, job_id, value)
    payload = "x" * (VALUE_LIMIT - len(old.evolve(payload="").to_value()) - 4)
    grown = old.evolve(payload=payload).to_value()
    assert len(grown) == VALUE_LIMIT
    db.transact(lambda tr: tr.set(key, grown))


def test_claim_round_reads_afresh_a_queue_an_earlier_claim_wrote_to(tmp_path: Path) -> None:
    """Queue a's job is dead-lettered by its claim, which releases its dependent onto
    queue b, visited next in the same round: b's claim must see the dependent (read
    ahead before a's claim, b's rows did not hold it). Without reading b afresh the round
    leased b's first job only and moved b's pointer to that lease's expiry, leaving the
    dependent ready behind a pointer 30 s late."""
    with quick.open(f"sqlite:///{tmp_path / 'r.db'}") as db:
        quick.enqueue(db, "a", "t", "small", job_id="big")
        quick.enqueue(db, "b", "t", "first", job_id="first")
        quick.enqueue(db, "b", "t", "then", job_id="dependent", depends_on=["big"],
                      if_dependency_fails="run")  # fmt: skip
        _grow_to_the_limit(db, "a", "big")
        seed = next(s for s in range(100) if random.Random(s).randrange(2) == 0)  # a first
        tr, found = _start_round(db, limit=10, seed=seed)
        tr.commit()  # type: ignore[attr-defined]
        claimed = {c.job_id for c in found.claims}
        assert quick.queue_counts(db, "a")["dead"] == 1
        pointer = db.transact(lambda t: pointers.read_pointer(t, "b"))
        assert pointer is not None
        assert claimed == {"first", "dependent"} or pointer["v"] <= NOW, (claimed, pointer)
