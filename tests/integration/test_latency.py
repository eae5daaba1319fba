"""``?latency=``: the sqlite engine spends FoundationDB's round trips where FDB has them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import keyspace
from keyspace import InvalidURL
from keyspace.latency import Latency
from keyspace.protocol import Transaction
from keyspace.sqlite_engine import SqliteDatabase


def test_latency_adds_grv_read_and_commit_waits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}?latency=grv:40,read:20,commit:60"
    with keyspace.open(url) as db:

        def body(tr: Transaction) -> None:
            tr.get(b"a")  # grv + read
            tr.get_range(b"b", b"c")  # read
            tr.get_many([b"d", b"e", b"f"])  # one read for all three
            tr.set(b"a", b"v")

        started = time.monotonic()
        db.transact(body)  # + commit
        elapsed = time.monotonic() - started
        assert elapsed >= 0.040 + 3 * 0.020 + 0.060
        assert elapsed < 0.040 + 5 * 0.020 + 0.060 + 0.5  # get_many was one round trip

        started = time.monotonic()
        db.transact(lambda tr: tr.get(b"a"))  # a read-only commit costs no commit wait
        assert 0.060 <= time.monotonic() - started < 0.110


def test_latency_of_concurrent_commits_overlaps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}?latency=commit:300"
    with keyspace.open(url) as db:
        barrier = threading.Barrier(2)

        def write(key: bytes) -> None:
            barrier.wait()
            db.transact(lambda tr: tr.set(key, b"v"))

        threads = [threading.Thread(target=write, args=(k,)) for k in (b"a", b"b")]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert 0.300 <= elapsed < 0.550  # serialised waits would take 600 ms


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("grv", "expected grv:MS"),
        ("disk:1", "expected grv:MS"),
        ("read:fast", "not a number"),
        ("commit:-1", "outside 0 to 10000"),
        ("", "names no round trip"),
    ],
)
def test_latency_parameter_is_validated(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(InvalidURL, match=problem):
        keyspace.open(f"sqlite:///{tmp_path / 'q.db'}?latency={value}")


def test_latency_is_refused_on_fdb_urls(tmp_path: Path) -> None:
    with pytest.raises(InvalidURL, match="sqlite URLs only"):
        keyspace.open(f"fdb://{tmp_path / 'fdb.cluster'}?latency=grv:1")


def _counting(waits: list[str]) -> Latency:
    """A latency whose waits are recorded by name instead of slept."""
    names = {1.0: "grv", 2.0: "read", 3.0: "commit"}

    class Counting(Latency):
        def wait(self, seconds: float) -> None:  # type: ignore[override]
            waits.append(names[seconds])

    return Counting(grv=1.0, read=2.0, commit=3.0)


def test_latency_get_many_pays_one_read_however_many_keys(tmp_path: Path) -> None:
    waits: list[str] = []
    with SqliteDatabase(str(tmp_path / "q.db"), latency=_counting(waits)) as db:
        tr = db.create_transaction()
        tr.get_many([b"a"])
        assert sorted(waits) == ["grv", "read"]
        waits.clear()
        tr.get_many([b"b"])
        assert waits == ["read"]
        waits.clear()
        tr.get_many([b"c", b"d", b"e"])
        assert waits == ["read"]
        waits.clear()
        tr.get_many([])
        tr.get_many([b"a"])  # already read: answered from the transaction's cache
        tr.get_many([b"c", b"d"])
        assert waits == []
