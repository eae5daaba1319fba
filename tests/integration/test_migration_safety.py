"""quick.migrate refusing what would lose work: a store migrated onto itself under
another name, bad queue names, a queue another pass is moving; and carrying finished
jobs' ids so they still dedupe on the destination."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import quick
from keyspace.codec import pack_value
from keyspace.identity import store_identity
from keyspace.layout import MIGRATING, MIGRATING_DEAD, MIGRATION_LEASES, MOVED, STORE_ID, describe
from keyspace.protocol import Database
from quick import migration_dead, migration_jobs
from quick.jobs import now_ms
from quick.migration_lease import (
    LEASE_MS,
    Fenced,
    Holding,
    LeaseTaken,
    PassStopped,
    acquire,
    holding,
    release,
)
from tests.integration.seams import SeamDatabase


def _everything(db: Database) -> list[tuple[bytes, bytes]]:
    return db.transact(lambda tr: tr.get_range(b"", b"\xff"))


# -- one store under two names ---------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?namespace=billing"])
def test_migrate_refuses_one_store_reached_through_a_symlink(tmp_path: Path, query: str) -> None:
    os.symlink(tmp_path / "a.db", tmp_path / "link.db")
    with quick.open(f"sqlite:///{tmp_path / 'a.db'}{query}") as source:
        ids = {quick.enqueue(source, "t1", "record", {"n": n}) for n in range(5)}
        quick.schedule(source, "tick", "*/5 * * * *", "t1", "record", None)
        with quick.open(f"sqlite:///{tmp_path / 'link.db'}{query}") as same:
            with pytest.raises(quick.InvalidArgument, match="source store"):
                quick.migrate(same, source)
            with pytest.raises(quick.InvalidArgument, match="source store"):
                quick.migrate(source, same, ["t1"])
        assert {job.id for job in quick.list_jobs(source, "t1")} == ids
        assert [s.name for s in quick.list_schedules(source)] == ["tick"]
        assert quick.enqueue(source, "t1", "record", None)  # not marked moved


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("fdb://", "fdb:///etc/foundationdb/fdb.cluster"),
        ("fdb:///etc/foundationdb/fdb.cluster", "fdb:///srv/copy-of/fdb.cluster"),
    ],
)
def test_migrate_refuses_one_cluster_under_two_spellings(
    tmp_path: Path, one: str, other: str
) -> None:
    """Two cluster-file spellings reaching one cluster: played by one file under two URLs."""
    with quick.open(f"sqlite:///{tmp_path / 'a.db'}") as db:
        ids = {quick.enqueue(db, "t1", "record", {"n": n}) for n in range(5)}
        source = SeamDatabase(db, lambda tr: tr, url=one)
        same = SeamDatabase(db, lambda tr: tr, url=other)
        with pytest.raises(quick.InvalidArgument, match="source store"):
            quick.migrate(source, same)
        assert {job.id for job in quick.list_jobs(db, "t1")} == ids
        assert quick.enqueue(db, "t1", "record", None)  # not marked moved


def test_migrate_between_two_namespaces_of_one_file_moves(tmp_path: Path) -> None:
    base = f"sqlite:///{tmp_path / 'a.db'}"
    with quick.open(f"{base}?namespace=one") as one, quick.open(f"{base}?namespace=two") as two:
        ids = {quick.enqueue(one, "t1", "record", {"n": n}) for n in range(5)}
        assert store_identity(one) != store_identity(two)
        report = quick.migrate(one, two)
        assert report.finished
        assert report.jobs == 5
        assert {job.id for job in quick.list_jobs(two, "t1")} == ids


def test_store_identity_is_written_once_and_described(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with quick.open(url) as first, quick.open(f"sqlite:///{tmp_path}/./a.db") as again:
        identity = store_identity(first)
        assert store_identity(again) == identity
        assert len(identity) == 32
        assert first.transact(lambda tr: tr.get(STORE_ID)) == identity.encode()
    assert describe(STORE_ID) == "store identity"


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "match"),
    [(["t1", "nope"], "no such queue on the source: 'nope'"), (["t1", ""], "must not be empty")],
)
def test_migrate_refuses_unknown_or_empty_queue_names_and_changes_nothing(
    stores: tuple[Database, Database], names: list[str], match: str
) -> None:
    source, dest = stores
    quick.enqueue(source, "t1", "record", None)
    before = _everything(source), _everything(dest)
    with pytest.raises(quick.InvalidArgument, match=match):
        quick.migrate(source, dest, names)
    assert (_everything(source), _everything(dest)) == before
    assert source.transact(lambda tr: tr.get(MOVED.pack(("nope",)))) is None


def test_migrate_takes_a_named_queue_that_has_only_dead_letters_or_a_marker(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    quick.enqueue(source, "t1", "record", None)
    (claim,) = quick.claim(source, "t1", "op", limit=1)
    quick.dead_letter(source, claim, "boom")
    assert quick.migrate(source, dest, ["t1"]).dead_letters == 1
    rerun = quick.migrate(source, dest, ["t1"])  # moved already: known, nothing to do
    assert rerun.finished
    assert rerun.jobs == 0


# -- finished jobs' ids ----------------------------------------------------------------


def test_migrate_moves_finished_ids_so_they_still_dedupe(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    done = [quick.enqueue(source, "t1", "record", {"n": n}, job_id=f"done-{n}") for n in range(30)]
    other = quick.enqueue(source, "t2", "record", None, job_id="other-queue")
    for claim in quick.claim(source, "t1", "op", limit=30):
        quick.complete(source, claim)
    (claim,) = quick.claim(source, "t2", "op", limit=1)
    quick.complete(source, claim)
    pending = quick.enqueue(source, "t1", "record", None, job_id="pending")

    report = quick.migrate(source, dest, ["t1"])

    assert report.finished
    assert report.jobs == 1
    assert report.tombstones == 30
    for job_id in done:
        assert quick.enqueue(dest, "t1", "record", None, job_id=job_id) == job_id
        assert quick.job_state(dest, job_id) is quick.JobState.COMPLETED
    assert [job.id for job in quick.list_jobs(dest, "t1")] == [pending]
    assert quick.queue_counts(dest, "t1")["ready"] == 1
    assert quick.job_state(dest, other) is None  # t2 stayed, and so did its tombstone
    assert quick.migrate(source, dest, ["t1"]).tombstones == 0  # a rerun copies none twice


# -- a queue another pass is moving ----------------------------------------------------


def test_lease_holding_decides_mine_other_and_free() -> None:
    held = pack_value({"o": "a", "ex": 1_000})
    assert holding(None, "a", 0) is Holding.FREE
    assert holding(held, "a", 5_000) is Holding.MINE  # its own, even past the expiry
    assert holding(held, "b", 999) is Holding.OTHER
    assert holding(held, "b", 1_000) is Holding.FREE
    assert holding(b"\x00garbage", "b", 0) is Holding.FREE


def test_migrate_leaves_a_queue_whose_lease_another_pass_holds(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    ids = {quick.enqueue(source, "t1", "record", {"n": n}) for n in range(20)}
    quick.enqueue(source, "t2", "record", None)
    clock = now_ms()
    assert acquire(dest, "t1", "other-pass", clock)  # held on the destination only

    first = quick.migrate(source, dest)
    assert first.busy == ("t1",)
    assert not first.finished
    assert first.jobs == 1
    assert first.queues == ("t2",)
    assert len(quick.list_jobs(source, "t1", limit=100)) == 20
    assert source.transact(lambda tr: tr.get(MIGRATION_LEASES.pack(("t1",)))) is None

    release(dest, "t1", "other-pass")
    second = quick.migrate(source, dest)
    assert second.finished
    assert second.jobs == 20
    assert {job.id for job in quick.list_jobs(dest, "t1", limit=100)} == ids


def test_an_expired_lease_is_taken_over_and_a_pass_that_lost_its_lease_stops(
    stores: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, dest = stores
    ids = {quick.enqueue(source, "t1", "record", {"n": n}) for n in range(100)}
    assert acquire(source, "t1", "killed-pass", now_ms() - LEASE_MS - 1)  # long expired
    real = migration_jobs._install
    calls = []

    def install_after_takeover(*args: object) -> object:
        calls.append(1)
        if len(calls) == 2:  # another pass takes the lease over in the middle of this one
            source.transact(
                lambda tr: tr.set(MIGRATION_LEASES.pack(("t1",)), _lease("thief", 10**15))
            )
        return real(*args)

    monkeypatch.setattr(migration_jobs, "_install", install_after_takeover)
    first = quick.migrate(source, dest, batch_size=30)
    # The second batch still installs (the destination's lease is this pass's); the
    # next transaction on the source finds the lease gone and the pass stops there.
    assert first.busy == ("t1",)
    assert first.jobs == 60
    monkeypatch.setattr(migration_jobs, "_install", real)
    source.transact(lambda tr: tr.clear(MIGRATION_LEASES.pack(("t1",))))
    second = quick.migrate(source, dest, batch_size=30)
    assert second.finished
    assert first.jobs + second.jobs == 100
    assert {job.id for job in quick.list_jobs(dest, "t1", limit=1000)} == ids
    assert quick.queue_counts(dest, "t1")["ready"] == 100


def _lease(owner: str, expiry: int) -> bytes:
    return pack_value({"o": owner, "ex": expiry})


def test_fenced_transactions_refuse_after_the_lease_is_taken(tmp_path: Path) -> None:
    with quick.open(f"sqlite:///{tmp_path / 'a.db'}") as db:
        assert acquire(db, "t1", "me", now_ms())
        fenced = Fenced(db, "t1", "me")
        assert fenced.transact(lambda tr: 7) == 7
        db.transact(lambda tr: tr.set(MIGRATION_LEASES.pack(("t1",)), _lease("you", 10**15)))
        with pytest.raises(LeaseTaken):
            fenced.transact(lambda tr: tr.set(b"x", b"written"))
        assert db.transact(lambda tr: tr.get(b"x")) is None


# -- dead letters ----------------------------------------------------------------------


def _bury(db: Database, queue: str, count: int) -> list[str]:
    for n in range(count):
        quick.enqueue(db, queue, "record", {"n": n})
    claims = quick.claim(db, queue, "op", limit=count)
    for claim in claims:
        quick.dead_letter(db, claim, "boom")
    return [claim.job_id for claim in claims]


def test_migrate_drops_the_copy_of_a_dead_letter_purged_mid_copy(
    stores: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, dest = stores
    letters = _bury(source, "t1", 6)
    real = migration_dead._delete_dead

    def purge_first(*args: object) -> object:
        quick.purge_dead(source, "t1", letters[0])  # staged already, purged before the delete
        return real(*args)

    monkeypatch.setattr(migration_dead, "_delete_dead", purge_first)
    report = quick.migrate(source, dest)
    assert report.finished
    assert report.dead_letters == 5
    assert sorted(d.job_id for d in quick.list_dead(dest, "t1")) == sorted(letters[1:])
    assert quick.queue_counts(dest, "t1")["dead"] == 5
    assert dest.transact(lambda tr: tr.get_range(*MIGRATING_DEAD.range())) == []


def test_migrate_installs_dead_letters_a_killed_pass_deleted_from_the_source(
    stores: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, dest = stores
    letters = _bury(source, "t1", 50)
    real = migration_dead._install_dead
    calls = []

    def crash(*args: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")  # between the source's delete and the install
        return real(*args)

    monkeypatch.setattr(migration_dead, "_install_dead", crash)
    with pytest.raises(KeyboardInterrupt):
        quick.migrate(source, dest, batch_size=20)
    assert dest.transact(lambda tr: tr.get_range(*MIGRATING_DEAD.range()))
    monkeypatch.setattr(migration_dead, "_install_dead", real)
    report = quick.migrate(source, dest, batch_size=20)
    assert report.finished
    assert sorted(d.job_id for d in quick.list_dead(dest, "t1", limit=100)) == sorted(letters)
    assert quick.queue_counts(dest, "t1")["dead"] == 50
    assert quick.list_dead(source, "t1") == []
    assert dest.transact(lambda tr: tr.get_range(*MIGRATING_DEAD.range())) == []


def test_fenced_transactions_stop_once_the_pass_is_interrupted(tmp_path: Path) -> None:
    stop = threading.Event()
    with quick.open(f"sqlite:///{tmp_path / 'a.db'}") as db:
        assert acquire(db, "t1", "me", now_ms())
        fenced = Fenced(db, "t1", "me", stop)
        fenced.transact(lambda tr: tr.set(b"x", b"before"))
        stop.set()
        with pytest.raises(PassStopped):
            fenced.transact(lambda tr: tr.set(b"x", b"after"))
        assert db.transact(lambda tr: tr.get(b"x")) == b"before"


def test_a_second_source_leaves_what_a_killed_pass_from_the_first_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_url, second_url = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'c.db'}"
    with (
        quick.open(first_url) as first,
        quick.open(second_url) as second,
        quick.open(f"sqlite:///{tmp_path / 'b.db'}") as dest,
    ):
        ids = {quick.enqueue(first, "t1", "record", {"n": n}) for n in range(30)}
        ids |= {quick.enqueue(second, "t1", "record", {"n": n}) for n in range(30)}
        real = migration_jobs._install

        def crash(*args: object) -> object:
            raise KeyboardInterrupt("killed")  # after the first source's delete

        monkeypatch.setattr(migration_jobs, "_install", crash)
        with pytest.raises(KeyboardInterrupt):
            quick.migrate(first, dest)
        monkeypatch.setattr(migration_jobs, "_install", real)
        assert quick.migrate(second, dest).finished  # its recovery keeps the first's staging
        assert quick.migrate(first, dest).finished
        assert {job.id for job in quick.list_jobs(dest, "t1", limit=100)} == ids
        assert dest.transact(lambda tr: tr.get_range(*MIGRATING.range())) == []
