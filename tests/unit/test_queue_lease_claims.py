"""The queue lease's memory of recent claims (quick.queue_leases): what lets a claim retried
after ``commit_unknown_result`` find the jobs its committed try leased."""

from __future__ import annotations

from keyspace.codec import pack_value
from keyspace.layout import QUEUE_LEASES
from keyspace.protocol import Database
from quick import queue_leases
from quick.queue_leases import RECENT_CLAIMS, claimed_by, leased_by_other, remember_claim


def test_queue_lease_remembers_the_last_claims_newest_first(db: Database) -> None:
    for n in range(RECENT_CLAIMS + 2):
        db.transact(
            lambda tr, n=n: remember_claim(
                tr, "q", queue_leases.queue_lease(tr, "q"), "w", f"t{n}", [f"j{n}"]
            )
        )
    lease = db.transact(lambda tr: queue_leases.queue_lease(tr, "q"))
    newest = RECENT_CLAIMS + 1
    assert [token for token, _ in lease["rc"]] == [f"t{newest - i}" for i in range(RECENT_CLAIMS)]
    assert claimed_by(lease, f"t{newest}") == [f"j{newest}"]
    assert claimed_by(lease, "t0") is None  # forgotten: older than the last RECENT_CLAIMS
    assert claimed_by(None, "t0") is None
    assert lease["o"] == "w"
    assert lease["ex"] == 0  # released: another consumer may lease the queue at once


def test_queue_lease_held_by_another_until_it_expires(db: Database) -> None:
    assert db.transact(lambda tr: queue_leases.lease_queue(tr, "q", "a", 1_000, 5_000)) is False
    # No pointer: nothing due, so nothing is leased; write one held lease by hand.
    db.transact(lambda tr: queue_leases.write_queue_lease(tr, "q", {"o": "a", "ex": 6_000}))
    assert db.transact(lambda tr: leased_by_other(tr, "q", "b", 5_999)) is True
    assert db.transact(lambda tr: leased_by_other(tr, "q", "a", 5_999)) is False
    assert db.transact(lambda tr: leased_by_other(tr, "q", "b", 6_000)) is False


def test_queue_lease_held_by_other_decides_as_a_read_does(db: Database) -> None:
    key = QUEUE_LEASES.pack(("q",))
    held = pack_value({"o": "a", "ex": 6_000})
    for data in (None, held, pack_value(["not", "a", "lease"]), b"\xff"):
        if data is None:
            db.transact(lambda tr: tr.clear(key))
        else:
            db.transact(lambda tr, data=data: tr.set(key, data))
        for owner, now in (("a", 5_999), ("b", 5_999), ("b", 6_000)):
            read = db.transact(lambda tr, o=owner, n=now: leased_by_other(tr, "q", o, n))
            assert queue_leases.held_by_other(key, data, owner, now) is read
    assert queue_leases.held_by_other(key, held, "b", 5_999) is True
