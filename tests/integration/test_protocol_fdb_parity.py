"""Conformance with FoundationDB 7.3's client, continued: versionstamped keys' write
conflicts and use of a transaction after ``cancel()``.

Each test names the rule of ``fdbclient/ReadYourWrites.actor.cpp`` it holds the engines to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import keyspace
from keyspace.errors import StorageError
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace, Versionstamp
from tests.integration.conflicts import commits

# -- a versionstamped key conflicts over every key it may become -----------------------


def test_protocol_versionstamped_key_write_conflict_covers_every_key_it_may_become(
    exact_db: Database, space: Subspace
) -> None:
    """``atomicOp(SetVersionstampedKey)`` adds ``getVersionstampKeyRange`` as the write
    conflict (from the read version's stamp to ten 0xff bytes), not the final key."""
    template = space.pack_with_versionstamp(("log", Versionstamp()))
    latest_possible = space.pack(("log", Versionstamp(b"\xff" * 10, 0)))
    before_the_range = space.pack(("log",))

    def reader_of(key: bytes) -> Transaction:
        tr = exact_db.create_transaction()
        assert tr.get(key) is None  # takes the read version, reads key serializably
        tr.set(space.pack(("mine", key)), b"x")
        return tr

    inside, outside = reader_of(latest_possible), reader_of(before_the_range)
    exact_db.transact(lambda tr: tr.set_versionstamped_key(template, b"entry"))
    assert commits(inside) is False  # no key at latest_possible was written, yet it conflicts
    assert commits(outside) is True


# -- use after cancel() is transaction_cancelled (1025) -----------------------------------

AFTER_CANCEL: list[tuple[str, Callable[[Transaction, bytes], Any]]] = [
    ("get", lambda tr, k: tr.get(k)),
    ("snapshot get", lambda tr, k: tr.snapshot.get(k)),
    ("get_many", lambda tr, k: tr.get_many([k, k + b"2"])),
    ("get_range", lambda tr, k: tr.get_range(k, k + b"\xff")),
    ("get_read_version", lambda tr, k: tr.get_read_version()),
    ("watch", lambda tr, k: tr.watch(k)),
    ("commit", lambda tr, k: tr.commit()),
    ("versionstamp", lambda tr, k: tr.get_versionstamp().wait()),
    ("on_error", lambda tr, k: tr.on_error(StorageError(1020))),
]


@pytest.mark.parametrize(("what", "call"), AFTER_CANCEL, ids=[name for name, _ in AFTER_CANCEL])
def test_protocol_use_after_cancel_is_transaction_cancelled(
    exact_db: Database, space: Subspace, what: str, call: Callable[[Transaction, bytes], Any]
) -> None:
    """``cancel()`` sets the reset promise to transaction_cancelled: reads, watches,
    ``getReadVersion``, ``commit``, ``getVersionstamp`` and ``onError`` all fail with it."""
    key = space.pack(("k",))
    tr = exact_db.create_transaction()
    tr.set(key, b"v")
    tr.cancel()
    with pytest.raises(StorageError) as caught:
        call(tr, key)
    assert caught.value.code == 1025, what


def test_protocol_reset_after_cancel_makes_the_transaction_usable(
    exact_db: Database, space: Subspace
) -> None:
    key = space.pack(("k",))
    tr = exact_db.create_transaction()
    tr.set(key, b"lost")
    tr.cancel()
    tr.reset()
    tr.set(key, b"kept")
    tr.commit()
    assert exact_db.transact(lambda t: t.get(key)) == b"kept"


def test_sqlite_writes_after_cancel_are_refused_too(tmp_path: Path) -> None:
    """Stricter than FoundationDB, which accepts them and fails the commit instead."""
    with keyspace.open(f"sqlite:///{tmp_path / 'c.db'}") as db:
        tr = db.create_transaction()
        tr.cancel()
        with pytest.raises(StorageError) as caught:
            tr.set(b"k", b"v")
        assert caught.value.code == 1025
        with pytest.raises(StorageError) as caught:
            tr.add_write_conflict_key(b"k")
        assert caught.value.code == 1025


def test_sqlite_failed_on_error_cancels_the_transaction(tmp_path: Path) -> None:
    """Once ``onError`` has thrown, FoundationDB (API >= 610) cancels the transaction."""
    with keyspace.open(f"sqlite:///{tmp_path / 'c.db'}?retry_limit=0") as db:
        tr = db.create_transaction()
        with pytest.raises(StorageError) as caught:
            tr.on_error(StorageError(1020))
        assert caught.value.code == 1020  # past the retry limit: the error itself
        with pytest.raises(StorageError) as caught:
            tr.get(b"k")
        assert caught.value.code == 1025
        tr.reset()
        assert tr.get(b"k") is None
