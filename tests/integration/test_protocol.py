"""Conformance: the transaction protocol behaves as FoundationDB's on every engine."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyspace import StorageError, transactional
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace, Versionstamp
from tests.integration.conflicts import commits

ROOT = Path(__file__).resolve().parents[2]
Once = Callable[[Database, Callable[[Transaction], Any]], Any]


def _fill(db: Database, space: Subspace, n: int) -> list[bytes]:
    keys = [space.pack((i,)) for i in range(n)]

    def body(tr: Transaction) -> None:
        for i, key in enumerate(keys):
            tr.set(key, b"v%d" % i)

    db.transact(body)
    return keys


# -- reads and writes ---------------------------------------------------------------


def test_protocol_get_set_clear_round_trip(db: Database, space: Subspace) -> None:
    key = space.pack(("k",))
    assert db.transact(lambda tr: tr.get(key)) is None
    db.transact(lambda tr: tr.set(key, b"hello"))
    assert db.transact(lambda tr: tr.get(key)) == b"hello"
    db.transact(lambda tr: tr.clear(key))
    assert db.transact(lambda tr: tr.get(key)) is None


def test_protocol_range_read_is_ordered_end_exclusive_and_limited(
    db: Database, space: Subspace
) -> None:
    keys = _fill(db, space, 10)
    rows = db.transact(lambda tr: tr.get_range(keys[2], keys[7]))
    assert [k for k, _ in rows] == keys[2:7]
    rows = db.transact(lambda tr: tr.get_range(keys[2], keys[7], limit=3))
    assert [k for k, _ in rows] == keys[2:5]
    rows = db.transact(lambda tr: tr.get_range(keys[2], keys[7], reverse=True))
    assert [k for k, _ in rows] == keys[6:1:-1]
    rows = db.transact(lambda tr: tr.get_range(keys[2], keys[7], limit=2, reverse=True))
    assert [k for k, _ in rows] == [keys[6], keys[5]]
    assert db.transact(lambda tr: tr.get_range(keys[7], keys[2])) == []


def test_protocol_prefix_read_covers_exactly_the_prefix(db: Database, space: Subspace) -> None:
    def body(tr: Transaction) -> None:
        tr.set(space.pack(("a", 1)), b"1")
        tr.set(space.pack(("a", 2)), b"2")
        tr.set(space.pack(("ab",)), b"x")
        tr.set(space.pack(("b",)), b"y")

    db.transact(body)
    rows = db.transact(lambda tr: tr.get_range_startswith(space.pack(("a",))))
    assert [v for _, v in rows] == [b"1", b"2"]
    rows = db.transact(lambda tr: tr.get_range(*space.range(("a",))))
    assert [v for _, v in rows] == [b"1", b"2"]
    rows = db.transact(lambda tr: tr.get_range_startswith(space.raw, reverse=True, limit=1))
    assert rows == [(space.pack(("b",)), b"y")]


def test_protocol_range_read_spans_many_pages(db: Database, space: Subspace) -> None:
    keys = _fill(db, space, 700)

    def body(tr: Transaction) -> list[Any]:
        tr.clear(keys[300])
        tr.set(keys[10] + b"\x00", b"extra")
        return tr.get_range(*space.range())

    rows = db.transact(body)
    assert len(rows) == 700
    assert keys[300] not in {k for k, _ in rows}
    assert rows[11] == (keys[10] + b"\x00", b"extra")


# -- read your writes -------------------------------------------------------------------


def test_protocol_reads_see_own_sets_and_clears(db: Database, space: Subspace) -> None:
    keys = _fill(db, space, 6)

    def body(tr: Transaction) -> tuple[Any, ...]:
        tr.set(keys[1], b"new")
        tr.clear(keys[2])
        tr.set(space.pack((2, "between")), b"ins")
        return (
            tr.get(keys[1]),
            tr.get(keys[2]),
            tr.snapshot.get(keys[1]),
            [k for k, _ in tr.get_range(*space.range())],
        )

    one, two, snap, listed = db.transact(body)
    assert (one, two, snap) == (b"new", None, b"new")
    assert listed == [keys[0], keys[1], space.pack((2, "between")), keys[3], keys[4], keys[5]]


def test_protocol_reads_see_own_range_clear_and_later_sets(db: Database, space: Subspace) -> None:
    keys = _fill(db, space, 8)

    def body(tr: Transaction) -> tuple[Any, ...]:
        tr.clear_range(keys[2], keys[6])
        tr.set(keys[4], b"back")
        tr.add(keys[5], struct.pack("<q", 7))
        return (
            [k for k, _ in tr.get_range(*space.range())],
            tr.get(keys[3]),
            tr.get(keys[4]),
            tr.get(keys[5]),
            [k for k, _ in tr.get_range(*space.range(), reverse=True, limit=3)],
        )

    listed, three, four, five, tail = db.transact(body)
    assert listed == [keys[0], keys[1], keys[4], keys[5], keys[6], keys[7]]
    assert (three, four, five) == (None, b"back", struct.pack("<q", 7))
    assert tail == [keys[7], keys[6], keys[5]]
    after = db.transact(lambda tr: [k for k, _ in tr.get_range(*space.range())])
    assert after == listed


def test_protocol_reads_see_own_atomic_ops(db: Database, space: Subspace) -> None:
    key = space.pack(("counter",))
    db.transact(lambda tr: tr.set(key, struct.pack("<q", 40)))

    def body(tr: Transaction) -> tuple[bytes | None, list[Any]]:
        tr.add(key, struct.pack("<q", 1))
        tr.add(key, struct.pack("<q", 1))
        return tr.get(key), tr.get_range(*space.range())

    value, rows = db.transact(body)
    assert value == struct.pack("<q", 42)
    assert rows == [(key, struct.pack("<q", 42))]


# -- atomic operations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "stored", "param", "expected"),
    [
        ("add", None, struct.pack("<q", 5), struct.pack("<q", 5)),
        ("add", struct.pack("<q", -3), struct.pack("<q", 5), struct.pack("<q", 2)),
        ("add", b"\xff\xff", b"\x01\x00", b"\x00\x00"),
        ("add", b"\x01", b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"),
        ("add", b"\x01\x00\x00\x01", b"\x01\x00", b"\x02\x00"),
        ("max", None, b"\x05\x00", b"\x05\x00"),
        ("max", b"\x00\x01", b"\xff\x00", b"\x00\x01"),
        ("max", b"\xff\xff", b"\x01\x00\x00", b"\xff\xff\x00"),
        ("min", None, b"\x05\x00", b"\x05\x00"),
        ("min", b"\x00\x01", b"\xff\x00", b"\xff\x00"),
        ("min", b"\x01\x00\x00\x01", b"\x02\x00", b"\x01\x00"),
        ("byte_max", b"abc", b"abd", b"abd"),
        ("byte_max", b"b", b"abcdef", b"b"),
        ("byte_max", None, b"x", b"x"),
        ("byte_min", b"abc", b"abd", b"abc"),
        ("byte_min", None, b"x", b"x"),
        ("compare_and_clear", b"same", b"same", None),
        ("compare_and_clear", b"other", b"same", b"other"),
        ("compare_and_clear", None, b"same", None),
        ("bit_and", None, b"\x0f", b"\x0f"),
        ("bit_or", b"\xf0", b"\x0f\x01", b"\xff\x01"),
        ("bit_xor", b"\xff", b"\x0f", b"\xf0"),
    ],
)
def test_protocol_atomic_op_follows_fdb_rules(
    db: Database,
    space: Subspace,
    once: Once,
    op: str,
    stored: bytes | None,
    param: bytes,
    expected: bytes | None,
) -> None:
    key = space.pack(("atomic",))
    if stored is not None:
        db.transact(lambda tr: tr.set(key, stored))
    once(db, lambda tr: getattr(tr, op)(key, param))
    assert db.transact(lambda tr: tr.get(key)) == expected


def test_protocol_atomic_ops_add_no_read_conflict(exact_db: Database, space: Subspace) -> None:
    key = space.pack(("hot",))
    first = exact_db.create_transaction()
    first.get_read_version()
    first.add(key, struct.pack("<q", 1))
    exact_db.transact(lambda tr: tr.add(key, struct.pack("<q", 10)))
    first.commit()
    assert exact_db.transact(lambda tr: tr.get(key)) == struct.pack("<q", 11)


# -- conflicts --------------------------------------------------------------------------


def test_protocol_serializable_read_conflicts_with_later_write(
    exact_db: Database, space: Subspace
) -> None:
    key, other = space.pack(("k",)), space.pack(("other",))
    tr = exact_db.create_transaction()
    assert tr.get(key) is None
    exact_db.transact(lambda t: t.set(key, b"theirs"))
    tr.set(other, b"mine")
    with pytest.raises(StorageError) as caught:
        tr.commit()
    assert caught.value.code == 1020
    assert caught.value.name == "not_committed"
    assert caught.value.retryable
    assert exact_db.transact(lambda t: t.get(other)) is None


def test_protocol_snapshot_read_does_not_conflict(exact_db: Database, space: Subspace) -> None:
    key, other = space.pack(("k",)), space.pack(("other",))
    tr = exact_db.create_transaction()
    assert tr.snapshot.get(key) is None
    assert tr.snapshot.get_range(*space.range()) == []
    exact_db.transact(lambda t: t.set(key, b"theirs"))
    tr.set(other, b"mine")
    tr.commit()
    assert exact_db.transact(lambda t: t.get(other)) == b"mine"


def test_protocol_range_read_conflicts_only_inside_what_was_read(
    exact_db: Database, space: Subspace
) -> None:
    keys = _fill(exact_db, space, 6)
    out = space.pack(("z",))

    def attempt(write: bytes) -> bool:
        tr = exact_db.create_transaction()
        rows = tr.get_range(keys[0], keys[5], limit=2)
        assert len(rows) == 2
        exact_db.transact(lambda t: t.set(write, b"x"))
        tr.set(out, b"mine")
        return commits(tr)

    assert attempt(keys[0] + b"\x00") is False
    assert attempt(keys[3]) is True


def test_protocol_explicit_conflict_ranges(exact_db: Database, space: Subspace) -> None:
    key, other = space.pack(("k",)), space.pack(("other",))
    tr = exact_db.create_transaction()
    tr.get_read_version()
    tr.add_read_conflict_key(key)
    exact_db.transact(lambda t: t.set(key, b"theirs"))
    tr.set(other, b"mine")
    with pytest.raises(StorageError) as caught:
        tr.commit()
    assert caught.value.code == 1020

    reader = exact_db.create_transaction()
    reader.get(key)
    writer = exact_db.create_transaction()
    writer.add_write_conflict_range(space.pack(("j",)), space.pack(("l",)))
    writer.commit()
    reader.set(other, b"mine")
    with pytest.raises(StorageError):
        reader.commit()


def test_protocol_explicit_read_conflict_takes_no_read_version(
    exact_db: Database, space: Subspace
) -> None:
    """The range is checked against the read version taken later: first read, else commit."""
    key, other = space.pack(("k",)), space.pack(("other",))
    never_reads = exact_db.create_transaction()
    never_reads.add_read_conflict_key(key)
    exact_db.transact(lambda t: t.set(key, b"before the commit's read version"))
    never_reads.set(other, b"mine")
    never_reads.commit()

    reads_later = exact_db.create_transaction()
    reads_later.add_read_conflict_key(key)
    exact_db.transact(lambda t: t.set(key, b"before the first read"))
    reads_later.get(other)
    reads_later.set(other, b"mine again")
    reads_later.commit()

    reads_first = exact_db.create_transaction()
    reads_first.add_read_conflict_key(key)
    reads_first.get(other)
    exact_db.transact(lambda t: t.set(key, b"after the first read"))
    reads_first.set(other, b"conflicts")
    with pytest.raises(StorageError) as caught:
        reads_first.commit()
    assert caught.value.code == 1020


def test_protocol_blind_writes_never_conflict(exact_db: Database, space: Subspace) -> None:
    key = space.pack(("k",))
    first = exact_db.create_transaction()
    first.set(key, b"first")
    exact_db.transact(lambda t: t.set(key, b"second"))
    first.commit()
    assert exact_db.transact(lambda t: t.get(key)) == b"first"


def test_protocol_read_only_commit_never_conflicts(exact_db: Database, space: Subspace) -> None:
    key = space.pack(("k",))
    tr = exact_db.create_transaction()
    tr.get(key)
    exact_db.transact(lambda t: t.set(key, b"theirs"))
    assert commits(tr), "a read-only commit conflicted"
    assert tr.get_committed_version() == -1  # read-only: nothing was committed


# -- versions and versionstamps -------------------------------------------------------------


def test_protocol_versions_advance_with_commits(exact_db: Database, space: Subspace) -> None:
    tr = exact_db.create_transaction()
    tr.set(space.pack(("k",)), b"1")
    tr.commit()
    committed = tr.get_committed_version()
    later = exact_db.create_transaction()
    assert later.get_read_version() >= committed
    later.set(space.pack(("k",)), b"2")
    later.commit()
    assert later.get_committed_version() > committed


def test_protocol_versionstamped_key_and_value(db: Database, space: Subspace, once: Once) -> None:
    def body(tr: Transaction) -> Any:
        tr.set_versionstamped_key(space.pack_with_versionstamp(("log", Versionstamp())), b"e1")
        tr.set_versionstamped_value(
            space.pack(("latest",)), space.pack_with_versionstamp((Versionstamp(),))
        )
        return tr.get_versionstamp()

    future = once(db, body)
    rows = db.transact(lambda tr: tr.get_range(*space.range(("log",))))
    assert len(rows) == 1
    (stamp,) = space.unpack(rows[0][0])[1:]
    assert isinstance(stamp, Versionstamp.__mro__[1])
    assert stamp.is_complete()
    latest = db.transact(lambda tr: tr.get(space.pack(("latest",))))
    assert latest == space.raw + b"\x33" + stamp.tr_version + b"\x00\x00"
    if future is not None:
        assert future.wait() == stamp.tr_version


def test_protocol_versionstamps_increase_across_commits(db: Database, space: Subspace) -> None:
    stamps = []
    for _ in range(5):

        def body(tr: Transaction) -> Any:
            tr.set(space.pack(("k",)), b"x")
            return tr.get_versionstamp()

        stamps.append(db.transact(body).wait())
    assert all(len(s) == 10 for s in stamps)
    assert stamps == sorted(set(stamps))


def test_protocol_reading_a_pending_versionstamped_value_is_refused(
    db: Database, space: Subspace
) -> None:
    key = space.pack(("v",))

    def body(tr: Transaction) -> None:
        tr.set_versionstamped_value(key, space.pack_with_versionstamp((Versionstamp(),)))
        tr.get(key)

    with pytest.raises(StorageError) as caught:
        db.transact(body)
    assert caught.value.code == 1036


# -- limits ------------------------------------------------------------------------------


def test_protocol_key_over_limit_is_refused(db: Database, space: Subspace) -> None:
    with pytest.raises(StorageError) as caught:
        db.transact(lambda tr: tr.set(b"k" * 10_001, b"v"))
    assert caught.value.code == 2102
    db.transact(lambda tr: tr.set(space.pack((b"k" * 9_000,)), b"v"))


def test_protocol_value_over_limit_is_refused_and_nothing_is_written(
    db: Database, space: Subspace
) -> None:
    key = space.pack(("k",))

    def body(tr: Transaction) -> None:
        tr.set(key, b"kept")
        tr.set(space.pack(("big",)), b"v" * 100_001)

    with pytest.raises(StorageError) as caught:
        db.transact(body)
    assert caught.value.code == 2103
    assert db.transact(lambda tr: tr.get(key)) is None
    db.transact(lambda tr: tr.set(key, b"v" * 100_000))


def test_protocol_transaction_over_size_limit_is_refused(db: Database, space: Subspace) -> None:
    def body(tr: Transaction) -> None:
        for i in range(101):
            tr.set(space.pack(("big", i)), b"v" * 99_990)

    with pytest.raises(StorageError) as caught:
        db.transact(body)
    assert caught.value.code == 2101
    assert db.transact(lambda tr: tr.get_range(*space.range(), limit=1)) == []


@pytest.mark.slow
def test_protocol_transaction_older_than_five_seconds_is_too_old(
    exact_db: Database, space: Subspace
) -> None:
    tr = exact_db.create_transaction()
    tr.get(space.pack(("k",)))
    time.sleep(5.3)

    def late_read_then_commit() -> None:
        tr.get(space.pack(("k2",)))
        tr.set(space.pack(("k",)), b"late")
        tr.commit()

    with pytest.raises(StorageError) as caught:
        late_read_then_commit()
    assert caught.value.code == 1007
    assert caught.value.retryable


def test_protocol_writes_to_the_system_keyspace_are_refused(db: Database) -> None:
    with pytest.raises(StorageError) as caught:
        db.transact(lambda tr: tr.set(b"\xff/secret", b"v"))
    assert caught.value.code == 2004


def test_protocol_non_bytes_keys_are_type_errors(db: Database) -> None:
    with pytest.raises(TypeError, match="key must be bytes"):
        db.transact(lambda tr: tr.set("text", b"v"))


# -- the retry loop ----------------------------------------------------------------------


def test_transactional_given_database_retries_conflicts_and_commits(
    exact_db: Database, space: Subspace
) -> None:
    key, out = space.pack(("k",)), space.pack(("out",))
    calls = []

    @transactional
    def copy(tr: Transaction) -> bytes | None:
        calls.append(1)
        value = tr.get(key)
        if len(calls) == 1:
            exact_db.transact(lambda t: t.set(key, b"changed"))
        tr.set(out, value or b"none")
        return value

    assert copy(exact_db) == b"changed"
    assert len(calls) == 2
    assert exact_db.transact(lambda tr: tr.get(out)) == b"changed"


def test_transactional_given_transaction_joins_without_committing(
    db: Database, space: Subspace
) -> None:
    key = space.pack(("k",))

    @transactional
    def write(tr: Transaction, value: bytes) -> str:
        tr.set(key, value)
        return "written"

    tr = db.create_transaction()
    assert write(tr, b"v") == "written"
    tr.reset()
    assert db.transact(lambda t: t.get(key)) is None

    @transactional
    def outer(tr: Transaction) -> None:
        write(tr, b"inner")
        tr.set(space.pack(("outer",)), b"x")

    outer(db)
    assert db.transact(lambda t: (t.get(key), t.get(space.pack(("outer",))))) == (b"inner", b"x")


def test_transactional_does_not_retry_permanent_errors(db: Database, space: Subspace) -> None:
    calls = []

    @transactional
    def too_big(tr: Transaction) -> None:
        calls.append(1)
        tr.set(space.pack(("k",)), b"x" * 200_000)

    with pytest.raises(StorageError):
        too_big(db)
    assert len(calls) == 1


def test_transactional_refuses_generators() -> None:
    with pytest.raises(ValueError, match="generator"):

        @transactional
        def gen(tr: Transaction) -> Any:
            yield tr


def test_protocol_reads_after_commit_are_refused(exact_db: Database, space: Subspace) -> None:
    tr = exact_db.create_transaction()
    tr.set(space.pack(("k",)), b"v")
    tr.commit()
    with pytest.raises(StorageError):
        tr.get(space.pack(("k",)))


# -- watches -------------------------------------------------------------------------


def _watch(db: Database, key: bytes) -> Any:
    return db.transact(lambda tr: tr.watch(key))


def test_protocol_watch_fires_when_another_transaction_changes_the_key(
    db: Database, space: Subspace
) -> None:
    key = space.pack(("watched",))
    db.transact(lambda tr: tr.set(key, b"before"))
    watch = _watch(db, key)
    timer = threading.Timer(0.05, lambda: db.transact(lambda tr: tr.set(key, b"after")))
    timer.start()
    started = time.monotonic()
    assert watch.wait(timeout=5.0) is True
    assert time.monotonic() - started < 2.0
    timer.join()


def test_protocol_watch_times_out_while_the_value_stays(db: Database, space: Subspace) -> None:
    key = space.pack(("quiet",))
    other = space.pack(("noisy",))
    db.transact(lambda tr: tr.set(key, b"same"))
    watch = _watch(db, key)
    db.transact(lambda tr: tr.set(other, b"unrelated"))
    db.transact(lambda tr: tr.set(key, b"same"))
    assert watch.wait(timeout=0.2) is False


def test_protocol_watch_of_a_missing_key_fires_when_it_appears(
    db: Database, space: Subspace
) -> None:
    key = space.pack(("later",))
    watch = _watch(db, key)
    db.transact(lambda tr: tr.add(key, struct.pack("<q", 1)))
    assert watch.wait(timeout=5.0) is True


def test_protocol_watch_cancel_releases_a_blocked_waiter(db: Database, space: Subspace) -> None:
    watch = _watch(db, space.pack(("never",)))
    threading.Timer(0.05, watch.cancel).start()
    started = time.monotonic()
    assert watch.wait(timeout=10.0) is False
    assert time.monotonic() - started < 5.0


def test_protocol_watch_sees_a_change_committed_by_another_process(
    url: str, db: Database, space: Subspace
) -> None:
    key = space.pack(("cross",))
    watch = _watch(db, key)
    code = (
        "import sys, keyspace\n"
        "db = keyspace.open(sys.argv[1])\n"
        "db.transact(lambda tr: tr.set(bytes.fromhex(sys.argv[2]), b'x'))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, url, key.hex()], cwd=ROOT)
    try:
        assert watch.wait(timeout=10.0) is True
    finally:
        assert writer.wait(timeout=30) == 0
