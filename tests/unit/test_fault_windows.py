"""The fault injector's outage and full-disk windows, and its timeout and retry limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import keyspace
from keyspace.errors import InvalidURL, StorageError
from keyspace.faults import Window, unreachable_wait
from keyspace.protocol import Transaction

#: A body that has run this often is in a loop the retry limit or timeout should have ended.
RUNAWAY_TRIES = 60


def _store(tmp_path: Path, query: str) -> keyspace.Database:
    return keyspace.open(f"sqlite:///{tmp_path / 'w.db'}?{query}")


def test_window_parse_accepts_plus_and_its_url_decoding() -> None:
    assert Window.parse("2+60") == Window(start=2, duration=60)
    assert Window.parse("0.5 1.5") == Window(start=0.5, duration=1.5)
    for bad in ("2", "2+x", "-1+3", "1+inf", ""):
        with pytest.raises(ValueError, match="START"):
            Window.parse(bad)


def test_window_bad_url_parameter_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidURL, match="outage="):
        _store(tmp_path, "outage=soon")
    with pytest.raises(InvalidURL, match="disk_full="):
        _store(tmp_path, "disk_full=1")
    assert not (tmp_path / "w.db").exists(), "a bad URL opens no store"


def test_unreachable_wait_blocks_to_the_end_or_times_out() -> None:
    outage = Window(start=2, duration=60)
    assert unreachable_wait(None, 5, 30) == (0.0, False)
    assert unreachable_wait(outage, 1, 30) == (0.0, False), "before the outage"
    assert unreachable_wait(outage, 62, 30) == (0.0, False), "after it"
    assert unreachable_wait(outage, 10, 30) == (30, True), "the timeout comes first: 1031"
    assert unreachable_wait(outage, 50, 30) == (12, False), "the outage ends first"
    assert unreachable_wait(outage, 10, None) == (52, False), "no timeout: wait it out"
    assert unreachable_wait(outage, 10, -1) == (0.0, True), "already past the timeout"


def test_outage_read_fails_with_1031_once_the_timeout_passes(tmp_path: Path) -> None:
    db = _store(tmp_path, "outage=0+30&timeout=300")
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        db.transact(lambda tr: tr.get(b"k"))
    assert caught.value.code == 1031
    assert time.monotonic() - started >= 0.3, "the read blocked until the timeout"
    tr = db.create_transaction()
    tr.set(b"k", b"v")  # writes are local: they do not block
    with pytest.raises(StorageError) as at_commit:
        tr.commit()
    assert at_commit.value.code == 1031
    for read in (
        lambda t: t.snapshot.get(b"k"),
        lambda t: t.get_range(b"a", b"z"),
        lambda t: t.get_many([b"a", b"b"]),
        lambda t: t.get_read_version(),
    ):
        with pytest.raises(StorageError) as failed:
            db.transact(read)
        assert failed.value.code == 1031
    db.close()


def test_outage_round_trips_wait_for_its_end_then_answer(tmp_path: Path) -> None:
    db = _store(tmp_path, "outage=0+0.5&timeout=0")
    started = time.monotonic()
    db.transact(lambda tr: tr.set(b"k", b"v"))
    assert time.monotonic() - started >= 0.5, "the commit waited for the outage to end"
    assert db.transact(lambda tr: tr.get(b"k")) == b"v"
    db.close()


def test_outage_starts_start_seconds_after_opening(tmp_path: Path) -> None:
    db = _store(tmp_path, "outage=0.3+30&timeout=200")
    db.transact(lambda tr: tr.set(b"k", b"v"))  # before the outage
    time.sleep(0.3)
    with pytest.raises(StorageError) as caught:
        db.transact(lambda tr: tr.get(b"k"))
    assert caught.value.code == 1031
    db.close()


def test_disk_full_refuses_writes_until_the_window_ends(tmp_path: Path) -> None:
    db = _store(tmp_path, "disk_full=0+0.4")
    tries = 0

    def write(tr: Transaction) -> None:
        nonlocal tries
        tries += 1
        tr.set(b"k", b"v")

    with pytest.raises(StorageError) as caught:
        db.transact(write)
    assert caught.value.code == 1510
    assert "full" in str(caught.value)
    assert tries == 1, "a full disk is not retried by the retry loop"
    assert db.transact(lambda tr: tr.get(b"k")) is None, "reads still answer"
    time.sleep(0.4)
    db.transact(write)
    assert db.transact(lambda tr: tr.get(b"k")) == b"v"
    db.close()


def test_faults_retry_limit_holds_across_injected_faults(tmp_path: Path) -> None:
    db = _store(tmp_path, "faults=not_committed:1&retry_limit=3")
    tries = 0

    def write(tr: Transaction) -> None:
        nonlocal tries
        tries += 1
        if tries > RUNAWAY_TRIES:
            raise RuntimeError("retry_limit=3 did not stop the retries")
        tr.set(b"k", b"v")

    with pytest.raises(StorageError) as caught:
        db.transact(write)
    assert caught.value.code == 1020
    assert tries == 4, "the first try and three retries"
    db.close()


def test_faults_timeout_holds_across_injected_faults(tmp_path: Path) -> None:
    db = _store(tmp_path, "faults=not_committed:1&retry_limit=-1&timeout=300")
    started = time.monotonic()

    def write(tr: Transaction) -> None:
        if time.monotonic() - started > 5:
            raise RuntimeError("timeout=300 did not stop the retries")
        tr.set(b"k", b"v")

    with pytest.raises(StorageError) as caught:
        db.transact(write)
    assert caught.value.code == 1031
    db.close()


def test_faults_reset_restarts_the_retry_count(tmp_path: Path) -> None:
    db = _store(tmp_path, "faults=not_committed:1&retry_limit=1")
    tr = db.create_transaction()
    for _ in range(3):
        tr.set(b"k", b"v")
        with pytest.raises(StorageError) as caught:
            tr.commit()
        tr.on_error(caught.value)  # the first retry is allowed
        tr.set(b"k", b"v")
        with pytest.raises(StorageError):
            tr.commit()
        with pytest.raises(StorageError):
            tr.on_error(caught.value)  # past the limit
        tr.reset()
    db.close()
