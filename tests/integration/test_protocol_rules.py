"""Conformance, continued: FoundationDB rules checked against its client's source.

Each test names the FoundationDB behaviour it holds the engines to; the sqlite engine
runs here, the fdb engine wherever a cluster is configured.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import keyspace
from keyspace.errors import ERROR_NAMES, RETRYABLE_CODES, StorageError
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace, Versionstamp
from tests.integration.conflicts import commits

# -- get_many -------------------------------------------------------------------------


def test_protocol_get_many_returns_values_in_order_with_own_writes(
    db: Database, space: Subspace
) -> None:
    a, b, c = (space.pack((name,)) for name in "abc")
    db.transact(lambda tr: (tr.set(a, b"1"), tr.set(b, b"2")))

    def body(tr: Transaction) -> list[bytes | None]:
        tr.set(c, b"3")
        tr.clear(a)
        return tr.get_many([b, a, c, space.pack(("absent",))])

    assert db.transact(body) == [b"2", None, b"3", None]
    assert db.transact(lambda tr: tr.get_many([])) == []


def test_protocol_get_many_conflicts_unless_snapshot(exact_db: Database, space: Subspace) -> None:
    key, other = space.pack(("k",)), space.pack(("other",))

    def attempt(snapshot: bool) -> bool:
        tr = exact_db.create_transaction()
        tr.get_many([key], snapshot=snapshot)
        exact_db.transact(lambda t: t.set(key, b"theirs"))
        tr.set(other, b"mine")
        return commits(tr)

    assert attempt(snapshot=True) is True
    assert attempt(snapshot=False) is False


# -- get_ranges -----------------------------------------------------------------------


def test_protocol_get_ranges_reads_each_range_as_get_range_would(
    db: Database, space: Subspace
) -> None:
    keys = [space.pack((group, i)) for group in "ab" for i in range(3)]
    db.transact(lambda tr: [tr.set(key, b"%d" % n) for n, key in enumerate(keys)])
    a, b = space.range(("a",)), space.range(("b",))

    def body(tr: Transaction) -> list[list[tuple[bytes, bytes]]]:
        tr.clear(keys[1])  # own writes are seen, in the range they fall in
        tr.set(space.pack(("b", 9)), b"mine")
        return tr.get_ranges([(*a, 0), (*b, 2), (*b, 0), (b[1], b[0], 0)])

    whole_a, first_b, whole_b, empty = db.transact(body)
    assert whole_a == [(keys[0], b"0"), (keys[2], b"2")]
    assert first_b == [(keys[3], b"3"), (keys[4], b"4")]
    mine = (space.pack(("b", 9)), b"mine")
    assert whole_b == [(keys[3], b"3"), (keys[4], b"4"), (keys[5], b"5"), mine]
    assert empty == []
    assert db.transact(lambda tr: tr.get_ranges([])) == []
    many = db.transact(lambda tr: tr.get_ranges([(*a, 1)] * 700, snapshot=True))
    assert many == [[(keys[0], b"0")]] * 700  # more ranges than one statement holds


def test_protocol_get_ranges_conflicts_on_what_each_read_covered_unless_snapshot(
    exact_db: Database, space: Subspace
) -> None:
    """A limited range covers up to its last row: a write past it does not conflict, one
    inside it does (and so does one into an empty range read whole); a snapshot read
    conflicts with none."""

    def attempt(tag: str, written: int | str, snapshot: bool) -> bool:
        rows, empty = space.range((tag, "r")), space.range((tag, "x"))
        exact_db.transact(lambda t: [t.set(space.pack((tag, "r", i)), b"") for i in (0, 1)])
        tr = exact_db.create_transaction()
        found = tr.get_ranges([(*rows, 1), (*empty, 0)], snapshot=snapshot)
        assert [[key for key, _ in got] for got in found] == [[space.pack((tag, "r", 0))], []]
        key = space.pack((tag, "x", 0)) if written == "x" else space.pack((tag, "r", written))
        exact_db.transact(lambda t: t.set(key, b"theirs"))
        tr.set(space.pack((tag, "mine")), b"mine")
        return commits(tr)

    assert attempt("inside", 0, snapshot=False) is False
    assert attempt("empty", "x", snapshot=False) is False
    assert attempt("past", 2, snapshot=False) is True
    assert attempt("snapshot", 0, snapshot=True) is True


# -- versions and versionstamps -------------------------------------------------------


def test_protocol_committed_version_is_minus_one_before_commit(
    exact_db: Database, space: Subspace
) -> None:
    tr = exact_db.create_transaction()
    assert tr.get_committed_version() == -1
    tr.set(space.pack(("k",)), b"v")
    assert tr.get_committed_version() == -1
    tr.commit()
    assert tr.get_committed_version() > 0


def test_protocol_versionstamp_asked_for_after_commit_is_used_during_commit(
    exact_db: Database, space: Subspace
) -> None:
    tr = exact_db.create_transaction()
    tr.set(space.pack(("k",)), b"v")
    before = tr.get_versionstamp()
    tr.commit()
    assert len(before.wait()) == 10
    with pytest.raises(StorageError) as caught:
        tr.get_versionstamp().wait()
    assert caught.value.code == 2017


def test_protocol_reads_reaching_a_pending_versionstamped_key_are_unreadable(
    db: Database, space: Subspace
) -> None:
    db.transact(lambda tr: tr.set(space.pack(("a",)), b"before"))
    log = space.pack(("log",))
    template = space.pack_with_versionstamp(("log", Versionstamp()))
    latest_possible = space.pack(("log", Versionstamp(b"\xff" * 10, 0)))

    def read(tr: Transaction, how: str) -> object:
        tr.set_versionstamped_key(template, b"entry")
        if how == "range":
            return tr.get_range_startswith(log)
        if how == "whole":
            return tr.get_range(*space.range())
        if how == "point":
            return tr.get(latest_possible)
        return tr.get_range(space.pack(("a",)), log)  # ends before the stamped key

    for how in ("range", "whole", "point"):
        with pytest.raises(StorageError) as caught:
            db.transact(read, how)
        assert caught.value.code == 1036, how
    assert db.transact(read, "beside") == [(space.pack(("a",)), b"before")]


# -- watches --------------------------------------------------------------------------


def test_protocol_watch_adds_a_read_conflict(exact_db: Database, space: Subspace) -> None:
    key, other = space.pack(("k",)), space.pack(("other",))
    tr = exact_db.create_transaction()
    watch = tr.watch(key)
    exact_db.transact(lambda t: t.set(key, b"theirs"))
    tr.set(other, b"mine")
    with pytest.raises(StorageError) as caught:
        tr.commit()
    assert caught.value.code == 1020
    watch.cancel()


def test_sqlite_watch_that_cannot_reread_fires_instead_of_raising(tmp_path: Path) -> None:
    db = keyspace.open(f"sqlite:///{tmp_path / 'w.db'}")
    tr = db.create_transaction()
    watch = tr.watch(b"k")
    tr.commit()
    db.close()  # every re-read now fails with client_invalid_operation (2000)
    assert watch.wait(5) is True


# -- timeout and retry limit ----------------------------------------------------------


def test_open_defaults_to_thirty_second_timeout_and_hundred_retries(tmp_path: Path) -> None:
    with keyspace.open(f"sqlite:///{tmp_path / 'd.db'}") as db:
        assert (db.timeout, db.retry_limit) == (30.0, 100)  # type: ignore[attr-defined]
    with keyspace.open(f"sqlite:///{tmp_path / 'd.db'}?timeout=0&retry_limit=-1") as db:
        assert (db.timeout, db.retry_limit) == (0.0, -1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["timeout=-1", "timeout=soon", "retry_limit=-2"])
def test_open_rejects_bad_timeout_and_retry_limit(tmp_path: Path, bad: str) -> None:
    with pytest.raises(keyspace.InvalidURL, match=bad.split("=")[0]):
        keyspace.open(f"sqlite:///{tmp_path / 'd.db'}?{bad}")


def test_sqlite_retry_limit_raises_the_last_error(tmp_path: Path) -> None:
    calls = []

    def always_conflicts(tr: Transaction) -> None:
        calls.append(1)
        raise StorageError(1020, "injected")

    with (
        keyspace.open(f"sqlite:///{tmp_path / 'r.db'}?retry_limit=3") as db,
        pytest.raises(StorageError) as caught,
    ):
        db.transact(always_conflicts)
    assert caught.value.code == 1020
    assert len(calls) == 4  # the first try and three retries


def test_sqlite_timeout_fails_a_transaction_across_its_retries(tmp_path: Path) -> None:
    with keyspace.open(f"sqlite:///{tmp_path / 't.db'}?timeout=100&retry_limit=-1") as db:
        started = time.monotonic()

        def slow_conflicts(tr: Transaction) -> None:
            tr.get(b"k")
            time.sleep(0.02)
            raise StorageError(1020, "injected")

        with pytest.raises(StorageError) as caught:
            db.transact(slow_conflicts)
        assert caught.value.code == 1031
        assert 0.1 <= time.monotonic() - started < 2.0

        tr = db.create_transaction()
        time.sleep(0.12)
        with pytest.raises(StorageError) as caught:
            tr.set(b"k", b"v")
        assert caught.value.code == 1031
        tr.reset()  # a reset starts the clock again, as FoundationDB's does
        tr.set(b"k", b"v")
        tr.commit()


# -- the error tables -----------------------------------------------------------------


def test_error_tables_follow_fdb_error_definitions_and_on_error() -> None:
    expected = {
        1025: ("transaction_cancelled", False),
        1029: ("watch_cancelled", False),
        1031: ("transaction_timed_out", False),
        1032: ("too_many_watches", False),
        1042: ("commit_proxy_memory_limit_exceeded", True),
        1051: ("batch_transaction_throttled", True),
        1078: ("grv_proxy_memory_limit_exceeded", True),
        1223: ("proxy_tag_throttled", True),
        2020: ("transaction_invalid_version", False),
        2203: ("api_version_not_supported", False),
        1020: ("not_committed", True),
        1007: ("transaction_too_old", True),
        4000: ("unknown_error", False),
        4100: ("internal_error", False),
    }
    for code, (name, retryable) in expected.items():
        assert ERROR_NAMES[code] == name
        assert (code in RETRYABLE_CODES) is retryable, code
        assert StorageError(code).name == name
