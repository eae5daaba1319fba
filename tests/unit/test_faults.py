"""The fault injector fails commits the ways FoundationDB does, at the rates asked."""

from __future__ import annotations

from pathlib import Path

import pytest

import keyspace
from keyspace import FaultRates, FaultyDatabase, StorageError
from keyspace.errors import InvalidURL


def test_faults_parse_names_and_codes() -> None:
    rates = FaultRates.parse("not_committed:0.1,1021:0.2,transaction_too_old:0.05")
    assert rates == FaultRates(
        not_committed=0.1, commit_unknown_result=0.2, transaction_too_old=0.05
    )
    with pytest.raises(ValueError, match="unknown fault"):
        FaultRates.parse("explode:1")
    with pytest.raises(ValueError, match="more than 1"):
        FaultRates(not_committed=0.7, commit_unknown_result=0.7)


def test_faults_commit_unknown_result_sometimes_after_really_committing(tmp_path: Path) -> None:
    inner = keyspace.open(f"sqlite:///{tmp_path / 'f.db'}")
    db = FaultyDatabase(inner, FaultRates(commit_unknown_result=1.0), seed=3)
    applied = lost = 0
    for i in range(40):
        tr = db.create_transaction()
        tr.set(b"k%d" % i, b"v")
        with pytest.raises(StorageError) as caught:
            tr.commit()
        assert caught.value.code == 1021
        assert caught.value.maybe_committed
        if inner.transact(lambda t, i=i: t.get(b"k%d" % i)) is None:
            lost += 1
        else:
            applied += 1
    assert applied > 5
    assert lost > 5
    db.close()


def test_faults_not_committed_writes_nothing_and_read_only_commits_pass(tmp_path: Path) -> None:
    inner = keyspace.open(f"sqlite:///{tmp_path / 'f.db'}")
    db = FaultyDatabase(inner, FaultRates(not_committed=1.0))
    tr = db.create_transaction()
    tr.set(b"k", b"v")
    with pytest.raises(StorageError) as caught:
        tr.commit()
    assert caught.value.code == 1020
    assert inner.transact(lambda t: t.get(b"k")) is None
    reader = db.create_transaction()
    assert reader.get(b"k") is None
    reader.commit()
    db.close()


def test_faults_retry_loop_converges_at_high_rates(tmp_path: Path) -> None:
    db = keyspace.open(f"sqlite:///{tmp_path / 'f.db'}?faults=1020:0.2,1021:0.2,1007:0.1&seed=5")
    assert isinstance(db, FaultyDatabase)
    for i in range(50):
        db.transact(lambda tr, i=i: tr.set(b"k%d" % i, b"v"))
    assert sum(db.injected.values()) > 15
    rows = db.transact(lambda tr: tr.get_range(b"k", b"l"))
    assert len(rows) == 50
    db.close()


def test_faults_bad_url_parameters_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidURL, match="unknown fault"):
        keyspace.open(f"sqlite:///{tmp_path / 'f.db'}?faults=boom:0.1")
