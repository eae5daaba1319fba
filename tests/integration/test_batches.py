"""Batches with callbacks: counts by outcome, open batches, and each callback enqueued
exactly once, in the transaction of the last member's settlement (also when the last
two settle concurrently, and under the fault injector)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import keyspace
import quick
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick.testing import drain
from tests.conftest import engine_url
from tests.integration.conflicts import commits


@pytest.fixture
def queue(space: Subspace) -> str:
    return f"b-{space.prefix[1][:12]}"


def _app(calls: list[tuple[str, Any]]) -> quick.App:
    app = quick.App()

    @app.job("work")
    def work(payload: Any, meta: quick.Meta) -> Any:
        if payload == "drop":
            raise quick.Discard("dropped on purpose")
        return {"double": payload * 2}

    for kind in ("success", "complete", "failure"):
        app.job(f"on-{kind}")(_recorder(calls, kind))
    return app


def _recorder(calls: list[tuple[str, Any]], kind: str) -> Any:
    def callback(payload: Any, meta: quick.Meta) -> None:
        calls.append((kind, payload))

    return callback


def _callbacks(queue: str) -> dict[str, Any]:
    return {
        "on_success": ("on-success", "s"),
        "on_complete": {"topic": "on-complete", "payload": "c", "priority": 5},
        "on_failure": ("on-failure", "f"),
    }


def test_batches_all_completed_fires_success_and_complete_once(db: Database, queue: str) -> None:
    calls: list[tuple[str, Any]] = []
    batch = quick.enqueue_batch(db, queue, [("work", i) for i in range(5)], **_callbacks(queue))
    status = quick.batch_status(db, batch)
    assert (status.total, status.pending, status.open) == (5, 5, False)
    drain(db, _app(calls))
    assert sorted(kind for kind, _ in calls) == ["complete", "success"]
    payload = dict(calls)["success"]
    assert payload["batch_id"] == batch
    assert payload["payload"] == "s"
    assert payload["counts"]["completed"] == 5
    assert payload["counts"]["pending"] == 0
    status = quick.batch_status(db, batch)
    assert (status.completed, status.pending, status.done) == (5, 0, True)
    results = quick.batch_results(db, batch, limit=3)
    assert [r.state for r in results] == ["completed"] * 3
    rest = quick.batch_results(db, batch, after=results[-1].job_id)
    assert len(rest) == 2
    doubled = sorted(r.result["double"] for r in results + rest)
    assert doubled == [0, 2, 4, 6, 8]


def test_batches_a_discarded_member_fires_failure_not_success(db: Database, queue: str) -> None:
    calls: list[tuple[str, Any]] = []
    batch = quick.enqueue_batch(db, queue, [("work", 1), ("work", "drop")], **_callbacks(queue))
    drain(db, _app(calls))
    assert sorted(kind for kind, _ in calls) == ["complete", "failure"]
    status = quick.batch_status(db, batch)
    assert (status.completed, status.discarded) == (1, 1)
    members = {r.state: r for r in quick.batch_results(db, batch)}
    assert members["completed"].result == {"double": 2}
    assert members["discarded"].reason == "dropped on purpose"


def test_batches_open_batch_fires_only_after_close(db: Database, queue: str) -> None:
    calls: list[tuple[str, Any]] = []
    app = _app(calls)
    batch = quick.enqueue_batch(
        db, queue, [("work", 1)], on_complete=("on-complete", None), keep_open=True
    )
    drain(db, app)
    assert calls == []
    added = quick.add_to_batch(db, batch, [("work", 2), {"topic": "work", "payload": 3}])
    assert len(added) == 2
    drain(db, app)
    assert calls == []
    assert quick.batch_status(db, batch).pending == 0
    assert quick.close_batch(db, batch) is True
    assert quick.close_batch(db, batch) is False
    drain(db, app)
    assert [kind for kind, _ in calls] == ["complete"]
    assert calls[0][1]["counts"]["total"] == 3
    with pytest.raises(quick.InvalidArgument, match="closed"):
        quick.add_to_batch(db, batch, [("work", 4)])


def test_batches_cancelled_member_counts_as_failure(db: Database, queue: str) -> None:
    calls: list[tuple[str, Any]] = []
    batch = quick.enqueue_batch(db, queue, [("work", 1), ("work", 2)], **_callbacks(queue))
    first = quick.batch_results(db, batch)[0].job_id
    assert quick.cancel(db, first)
    drain(db, _app(calls))
    assert sorted(kind for kind, _ in calls) == ["complete", "failure"]
    assert quick.batch_status(db, batch).cancelled == 1


def test_batches_last_two_members_settling_concurrently_fire_once(
    exact_db: Database, queue: str
) -> None:
    db = exact_db
    batch = quick.enqueue_batch(db, queue, [("work", 1), ("work", 2)], **_callbacks(queue))
    one, two = quick.claim(db, queue, "w", limit=2)
    tr1, tr2 = db.create_transaction(), db.create_transaction()
    assert quick.complete(tr1, one)
    assert quick.complete(tr2, two)
    assert commits(tr1)
    assert not commits(tr2)  # both read the batch's counter: the second conflicts
    assert quick.complete(db, two)  # its retry sees the first and fires
    callbacks = Counter(job.topic for job in quick.list_jobs(db, queue))
    assert callbacks == {"on-success": 1, "on-complete": 1}
    assert quick.batch_status(db, batch).done


def test_batches_bad_input_is_refused_before_anything_is_written(db: Database, queue: str) -> None:
    with pytest.raises(quick.InvalidArgument, match="at least one member"):
        quick.enqueue_batch(db, queue, [])
    with pytest.raises(quick.InvalidArgument, match="on_success"):
        quick.enqueue_batch(db, queue, [("work", 1)], on_success="nope")
    with pytest.raises(quick.InvalidArgument, match=r"jobs\[1\]"):
        quick.enqueue_batch(db, queue, [("work", 1), {"payload": 2}])
    with pytest.raises(quick.InvalidArgument, match="unknown field"):
        quick.enqueue_batch(db, queue, [{"topic": "work", "unique_key": "u"}])
    with pytest.raises(quick.InvalidPayload):
        quick.enqueue_batch(db, queue, [("work", object())])
    assert quick.list_jobs(db, queue) == []
    assert quick.list_batches(db) == []
    for call in (quick.batch_status, quick.close_batch, quick.batch_results):
        with pytest.raises(quick.InvalidArgument, match="no batch"):
            call(db, "f" * 32)
    with pytest.raises(quick.InvalidArgument, match="no batch"):
        quick.add_to_batch(db, "f" * 32, [("work", 1)])
    taken = quick.enqueue(db, queue, "work", 0)
    with pytest.raises(quick.InvalidArgument, match="already taken"):
        quick.enqueue_batch(db, queue, [{"topic": "work", "job_id": taken}])
    assert quick.list_batches(db) == []


def test_batches_ten_thousand_members_under_faults_fire_each_callback_once(
    tmp_path: Path, queue: str
) -> None:
    url = engine_url("faulty-sqlite", tmp_path, seed=7)
    with keyspace.open(url) as db:
        calls: list[tuple[str, Any]] = []
        members = [("work", "drop" if i % 1000 == 999 else i) for i in range(10_000)]
        batch = quick.enqueue_batch(db, queue, members, **_callbacks(queue))
        drain(db, _app(calls), max_jobs=20_000)
        assert sorted(kind for kind, _ in calls) == ["complete", "failure"]
        status = quick.batch_status(db, batch)
        assert (status.total, status.completed, status.discarded) == (10_000, 9_990, 10)
        assert dict(calls)["complete"]["counts"]["pending"] == 0
