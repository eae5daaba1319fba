"""Conformance: the transaction protocol behaves as FoundationDB's on every engine:
the retry loop (``transactional``), and a committed transaction refusing reads.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyspace import StorageError, transactional
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace

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
