"""Conformance: the transaction protocol behaves as FoundationDB's on every engine:
conflicts, versions and versionstamps.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyspace import StorageError
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace, Versionstamp
from tests.integration.conflicts import commits
from tests.integration.protocol_helpers import Once, fill

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
    keys = fill(exact_db, space, 6)
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
