"""``?latency=``: the sqlite engine spends FoundationDB's round trips where FDB has them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import keyspace
from keyspace import InvalidURL
from keyspace.protocol import Transaction


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
