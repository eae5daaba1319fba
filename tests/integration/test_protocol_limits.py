"""Conformance: the transaction protocol behaves as FoundationDB's on every engine:
size and age limits, the system keyspace, key types.
"""

from __future__ import annotations

import pytest

from keyspace import StorageError
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from tests.clocks import EngineClock

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
    exact_db: Database, space: Subspace, exact_engine_clock: EngineClock
) -> None:
    tr = exact_db.create_transaction()
    tr.get(space.pack(("k",)))
    exact_engine_clock.advance(5.3)

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
