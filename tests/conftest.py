"""Engine fixtures: every behaviour test runs on each engine of the storage seam.

* ``sqlite``: the embedded engine on a fresh temp file.
* ``faulty-sqlite``: the same, wrapped in the fault injector (commits fail with
  1020, 1021 before or after applying, and 1007), so retry-safety is exercised.
* ``fdb``: a real FoundationDB cluster, when ``QUICK_TEST_FDB_CLUSTER_FILE`` names
  its cluster file; skipped with that reason otherwise. Each test gets its own
  namespace (``?namespace=``, derived from its temp directory and a per-session salt,
  so every URL a test builds, in-process or for a subprocess, names the same one), so
  tests and other applications on the cluster never see each other's keys, quick's
  root included; the namespace is cleared afterwards.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import keyspace
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from tests.clocks import EngineClock

FDB_CLUSTER_ENV = "QUICK_TEST_FDB_CLUSTER_FILE"
FAULTS = "not_committed:0.1,commit_unknown_result:0.1,transaction_too_old:0.05"
ENGINES = ["sqlite", "faulty-sqlite", "fdb"]
_SESSION = uuid.uuid4().hex[:8]


def namespace_for(tmp_path: Path) -> str:
    """The fdb namespace of the test whose temp directory is ``tmp_path``."""
    return f"test-{_SESSION}-{hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12]}"


def engine_url(engine: str, tmp_path: Path, seed: int = 1) -> str:
    """The URL that opens ``engine`` for one test (skips fdb without a cluster)."""
    if engine == "fdb":
        cluster = os.environ.get(FDB_CLUSTER_ENV)
        if not cluster:
            pytest.skip(f"fdb engine: set {FDB_CLUSTER_ENV} to a cluster file to run")
        return f"fdb://{cluster}?namespace={namespace_for(tmp_path)}"
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    if engine == "faulty-sqlite":
        url += f"?faults={FAULTS}&seed={seed}"
    return url


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The engine name under test."""
    return str(request.param)


@pytest.fixture(params=["sqlite", "fdb"])
def exact_engine(request: pytest.FixtureRequest) -> str:
    """Engines without injected faults, for tests that assert one commit's outcome."""
    return str(request.param)


@pytest.fixture
def exact_engine_clock(exact_engine: str, monkeypatch: pytest.MonkeyPatch) -> EngineClock:
    """The clock ``exact_db``'s engine ages transactions by: fake on sqlite (``advance``
    moves it at once), the cluster's own on fdb (``advance`` waits)."""
    return EngineClock(exact_engine, monkeypatch)


@pytest.fixture
def url(engine: str, tmp_path: Path) -> str:
    return engine_url(engine, tmp_path)


@pytest.fixture
def space() -> Subspace:
    """A fresh subspace per test, so tests never see each other's keys on a shared cluster."""
    return Subspace(("test", uuid.uuid4().hex))


def _open(url: str, space: Subspace) -> Iterator[Database]:
    db = keyspace.open(url)
    try:
        yield db
    finally:
        if url.startswith("fdb"):
            db.transact(lambda tr: tr.clear_range(b"", b"\xff"))  # the test's namespace
        db.close()


@pytest.fixture
def db(url: str, space: Subspace) -> Iterator[Database]:
    """A database on the engine under test."""
    yield from _open(url, space)


@pytest.fixture
def exact_db(exact_engine: str, tmp_path: Path, space: Subspace) -> Iterator[Database]:
    """A database whose commits fail only for real reasons (conflicts, limits)."""
    yield from _open(engine_url(exact_engine, tmp_path), space)


@pytest.fixture
def once(space: Subspace) -> Callable[[Database, Callable[[Transaction], Any]], Any]:
    """Run a non-idempotent body exactly once despite retries after commit_unknown_result.

    The body and a marker key commit together; a retry that finds the marker skips the
    body. This is the idempotency recipe quick's own transactions follow.
    """

    def run(db: Database, body: Callable[[Transaction], Any]) -> Any:
        marker = space.pack(("once", uuid.uuid4().hex))

        def guarded(tr: Transaction) -> Any:
            if tr.get(marker) is not None:
                return None
            tr.set(marker, b"")
            return body(tr)

        return db.transact(guarded)

    return run
