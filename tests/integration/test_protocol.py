"""Conformance: the transaction protocol behaves as FoundationDB's on every engine:
reads and writes, reading your own writes, atomic operations.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from tests.integration.protocol_helpers import Once, fill

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
    keys = fill(db, space, 10)
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
    keys = fill(db, space, 700)

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
    keys = fill(db, space, 6)

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
    keys = fill(db, space, 8)

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
