"""The consumer's claim round over many one-job queues: retry after an unknown commit
result, how many queues a round visits, and the pointer of a queue a round drains."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import quick
from keyspace.layout import POINTER_INDEX, POINTERS, QUEUE_LEASES, QUEUES
from keyspace.protocol import Database
from keyspace.retry import Tries
from quick import pointers
from quick.claim_rounds import ClaimRound, claim_round

NOW = 1_900_000_000_000
LEASE_MS = 30_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with quick.open(f"sqlite:///{tmp_path / 'r.db'}") as opened:
        yield opened


def _tenants(db: Database, count: int) -> None:
    quick.enqueue_many(
        db,
        [{"queue_id": f"t{i:04d}", "topic": "t", "payload": i} for i in range(count)],
    )


def _round(
    db: Database, tries: Tries, *, limit: int, seed: int = 0, owner: str = "c1"
) -> ClaimRound:
    tr = db.create_transaction()
    found = claim_round(
        tr, owner, NOW, limit=limit, lease_ms=LEASE_MS, tries=tries, rng=random.Random(seed),
        scan_limit=1000, watch=False,
    )  # fmt: skip
    tr.commit()
    return found


def test_claim_round_retried_after_a_committed_try_returns_its_claims(db: Database) -> None:
    """A try that committed but whose result was unknown: the retry hands back the same
    jobs and leases no more."""
    _tenants(db, 30)
    tries = Tries()
    first = _round(db, tries, limit=10)
    tries.commit_unknown()  # what the retry loop does on 1021
    again = _round(db, tries, limit=10)  # the retry loop's next try, with the same Tries
    assert sorted(c.job_id for c in again.claims) == sorted(c.job_id for c in first.claims)
    assert len(first.claims) == 10
    rest = _round(db, Tries(), limit=100)
    assert len(rest.claims) == 20  # the retry leased nothing more


def test_claim_round_retried_after_a_try_that_did_not_commit_claims_afresh(db: Database) -> None:
    _tenants(db, 30)
    tries = Tries()
    tr = db.create_transaction()
    lost = claim_round(
        tr, "c1", NOW, limit=10, lease_ms=LEASE_MS, tries=tries, rng=random.Random(0), watch=False
    )
    tr.cancel()  # this try never commits
    found = _round(db, tries, limit=10)
    assert len(lost.claims) == 10
    assert len(found.claims) == 10


def test_claim_round_retried_after_a_conflict_reads_none_of_that_tries_jobs(
    db: Database,
) -> None:
    """A try that conflicted committed nothing: its jobs went to the consumer that won
    them, and the retry must not read them, or that consumer settling them while the
    retry runs makes the retry conflict again."""
    _tenants(db, 30)
    tries = Tries()
    tr = db.create_transaction()
    lost = claim_round(
        tr, "c1", NOW, limit=10, lease_ms=LEASE_MS, tries=tries, rng=random.Random(0),
        scan_limit=1000, watch=False,
    )  # fmt: skip
    tr.cancel()  # the try conflicted: the retry loop says nothing to ``tries``
    won = _round(db, Tries(), limit=10, owner="c2")  # the same queues: the same jobs
    assert {c.job_id for c in won.claims} == {c.job_id for c in lost.claims}
    retry = db.create_transaction()
    found = claim_round(
        retry, "c1", NOW, limit=10, lease_ms=LEASE_MS, tries=tries, rng=random.Random(1),
        scan_limit=1000, watch=False,
    )  # fmt: skip
    for claim in won.claims:  # c2 settles what it won while c1's retry is open
        quick.complete(db, claim, now_ms=NOW + 1)
    retry.commit()  # no conflict: the retry read none of c2's jobs
    assert len(found.claims) == 10
    assert not {c.job_id for c in found.claims} & {c.job_id for c in won.claims}


def test_claim_round_writes_no_queue_lease(db: Database) -> None:
    """A round remembers its claims in its Tries, not on a queue lease record per queue."""
    _tenants(db, 5)
    _round(db, Tries(), limit=10)
    tr = db.create_transaction()
    assert tr.get_range(*QUEUE_LEASES.range()) == []


def _deep_queues(db: Database, queues: int, depth: int) -> None:
    quick.enqueue_many(
        db,
        [
            {"queue_id": f"d{i % queues:04d}", "topic": "t", "payload": i}
            for i in range(queues * depth)
        ],
    )


def test_claim_round_over_deep_queues_visits_few_of_them(db: Database) -> None:
    """1,024 due queues of 8 jobs, a batch of 128: the round plans 1,024 / ROUND_SPREAD =
    16 queues and takes 8 jobs from each, so concurrent rounds rarely meet on a queue."""
    _deep_queues(db, 1024, 8)
    found = _round(db, Tries(), limit=128)
    assert len(found.claims) == 128
    assert len({c.queue_id for c in found.claims}) == 16


def test_claim_round_over_one_job_queues_fills_its_batch(db: Database) -> None:
    """One-job queues give one job each: the round walks on until its batch is full."""
    _tenants(db, 100)
    found = _round(db, Tries(), limit=25)
    assert len(found.claims) == 25
    assert len({c.queue_id for c in found.claims}) == 25


def test_claim_rounds_from_different_entries_take_disjoint_queues(db: Database) -> None:
    """Two consumers reading the same page walk on from different random entries: rounds
    that share no queue both commit (no conflict)."""
    _deep_queues(db, 128, 8)
    tr_a, tr_b = db.create_transaction(), db.create_transaction()
    picks = []
    for tr, seed, owner in ((tr_a, 1, "a"), (tr_b, 2, "b")):
        rng = random.Random(seed)
        found = claim_round(
            tr, owner, NOW, limit=64, lease_ms=LEASE_MS, tries=Tries(), rng=rng, watch=False
        )
        picks.append({c.queue_id for c in found.claims})
    assert len(picks[0]) == len(picks[1]) == 8
    assert not picks[0] & picks[1]
    tr_a.commit()
    tr_b.commit()  # disjoint queues: no conflict


def test_claim_round_moves_a_drained_queues_pointer_to_its_lease_expiry(db: Database) -> None:
    _tenants(db, 3)
    found = _round(db, Tries(), limit=10)
    assert len(found.claims) == 3
    tr = db.create_transaction()
    for claim in found.claims:
        pointer = pointers.read_pointer(tr, claim.queue_id)
        assert pointer is not None
        assert pointer["v"] == claim.lease_until_ms == NOW + LEASE_MS


def test_drained_one_job_queues_leave_no_key_once_collected(db: Database) -> None:
    """Claimed, completed, then visited once at the lease expiry: pointer, index entry,
    queue lease and the zeroed counters are all gone (the claim marked the queue empty;
    compare-and-clear takes the counters)."""
    _tenants(db, 20)
    found = _round(db, Tries(), limit=100)
    for claim in found.claims:
        quick.complete(db, claim)
    later = NOW + LEASE_MS + pointers.EMPTY_GRACE_MS
    tr = db.create_transaction()
    collected = claim_round(
        tr, "c1", later, limit=100, lease_ms=LEASE_MS, tries=Tries(), watch=False
    )
    tr.commit()
    assert collected.claims == []
    tr = db.create_transaction()
    for prefix in (QUEUES, POINTERS, POINTER_INDEX, QUEUE_LEASES):
        assert tr.get_range(*prefix.range()) == [], prefix


def test_claim_round_visits_at_most_max_queues(db: Database) -> None:
    """A consumer whose rounds conflict asks for fewer queues: deep ones then fill the
    batch from those few, one-job ones give only as many jobs."""
    _deep_queues(db, 128, 8)
    tr = db.create_transaction()
    found = claim_round(
        tr, "c1", NOW, limit=64, lease_ms=LEASE_MS, tries=Tries(), rng=random.Random(0),
        watch=False, max_queues=1,
    )  # fmt: skip
    assert len(found.claims) == 8  # the one queue's whole depth
    assert len({c.queue_id for c in found.claims}) == 1
    tr.cancel()
    _tenants(db, 100)
    tr = db.create_transaction()
    found = claim_round(
        tr, "c1", NOW, limit=64, lease_ms=LEASE_MS, tries=Tries(), rng=random.Random(0),
        watch=False, max_queues=3,
    )  # fmt: skip
    assert len({c.queue_id for c in found.claims}) == 3
