"""``depends_on``: a job waits off its queue until every dependency completed; the last
dependency's settlement releases it in its own transaction; a failed dependency
discards it (or, per ``if_dependency_fails="run"``, runs it anyway)."""

from __future__ import annotations

from typing import Any

import pytest

import quick
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick import JobState
from quick.testing import drain
from tests.integration.conflicts import commits


@pytest.fixture
def queue(space: Subspace) -> str:
    return f"d-{space.prefix[1][:12]}"


def _app(ran: list[Any]) -> quick.App:
    app = quick.App()

    @app.job("work")
    def work(payload: Any, meta: quick.Meta) -> None:
        ran.append(payload)
        if payload == "drop":
            raise quick.Discard("dropped on purpose")

    return app


def _why(db: Database, job_id: str) -> str:
    with pytest.raises(quick.JobDiscarded) as discarded:
        quick.result(db, job_id, timeout=0)
    return discarded.value.reason


def test_dependencies_job_runs_after_all_of_them(db: Database, queue: str) -> None:
    ran: list[Any] = []
    a = quick.enqueue(db, queue, "work", "a")
    b = quick.enqueue(db, f"{queue}-other", "work", "b")  # across queues
    c = quick.enqueue(db, queue, "work", "c", depends_on=[a, b])
    assert quick.job_state(db, c) is JobState.WAITING
    with pytest.raises(quick.ResultTimeout):
        quick.result(db, c, timeout=0)  # waiting is pending, not finished
    assert [job.id for job in quick.list_jobs(db, queue)] == [a]
    drain(db, _app(ran), queue_id=queue)
    assert ran == ["a"]
    assert quick.job_state(db, c) is JobState.WAITING
    drain(db, _app(ran))
    assert ran == ["a", "b", "c"]
    assert quick.job_state(db, c) is JobState.COMPLETED


def test_dependencies_on_a_completed_job_is_met_at_once(db: Database, queue: str) -> None:
    ran: list[Any] = []
    a = quick.enqueue(db, queue, "work", "a")
    drain(db, _app(ran))
    b = quick.enqueue(db, queue, "work", "b", depends_on=[a])
    assert quick.job_state(db, b) is JobState.READY


def test_dependencies_failed_dependency_discards_the_chain(db: Database, queue: str) -> None:
    ran: list[Any] = []
    a = quick.enqueue(db, queue, "work", "drop")
    b = quick.enqueue(db, queue, "work", "b", depends_on=[a])
    c = quick.enqueue(db, queue, "work", "c", depends_on=[b])  # on a waiting job
    d = quick.enqueue(db, queue, "work", "d", depends_on=[a], if_dependency_fails="run")
    assert quick.job_state(db, d) is JobState.WAITING
    drain(db, _app(ran))
    assert ran == ["drop", "d"]
    assert quick.job_state(db, d) is JobState.COMPLETED
    assert quick.job_state(db, b) is JobState.DISCARDED
    assert quick.job_state(db, c) is JobState.DISCARDED
    assert _why(db, b) == f"dependency {a} was discarded"
    assert _why(db, c) == f"dependency {b} was discarded"
    late = quick.enqueue(db, queue, "work", "late", depends_on=[a])
    assert quick.job_state(db, late) is JobState.DISCARDED


def test_dependencies_bad_input_is_refused(db: Database, queue: str) -> None:
    a = quick.enqueue(db, queue, "work", "a")
    cases = [
        ({"depends_on": ["f" * 32]}, "unknown job"),
        ({"depends_on": []}, "at least one"),
        ({"depends_on": "abc"}, "list of job ids"),
        ({"depends_on": [a, a]}, "twice"),
        ({"depends_on": [a], "job_id": a}, "itself"),
        ({"depends_on": [a], "if_dependency_fails": "maybe"}, "if_dependency_fails"),
        ({"depends_on": [a], "unique_key": "u"}, "unique_key"),
    ]
    for args, problem in cases:
        with pytest.raises(quick.InvalidArgument, match=problem):
            quick.enqueue(db, queue, "work", "x", **args)
    assert [job.id for job in quick.list_jobs(db, queue)] == [a]


def test_dependencies_enqueue_racing_the_settlement_conflicts(
    exact_db: Database, queue: str
) -> None:
    db = exact_db
    ran: list[Any] = []
    a = quick.enqueue(db, queue, "work", "a")
    (held,) = quick.claim(db, queue, "w")
    settling, enqueueing = db.create_transaction(), db.create_transaction()
    assert quick.complete(settling, held)
    b = quick.enqueue(enqueueing, queue, "work", "b", depends_on=[a])
    assert commits(settling)
    assert not commits(enqueueing)  # it read the dependency the settlement finished
    assert quick.enqueue(db, queue, "work", "b", depends_on=[a], job_id=b) == b
    assert quick.job_state(db, b) is JobState.READY
    drain(db, _app(ran))
    assert ran == ["b"]


def test_dependencies_cancelling_a_waiting_job_fails_its_dependents(
    db: Database, queue: str
) -> None:
    ran: list[Any] = []
    a = quick.enqueue(db, queue, "work", "a")
    b = quick.enqueue(db, queue, "work", "b", depends_on=[a])
    c = quick.enqueue(db, queue, "work", "c", depends_on=[b])
    assert quick.cancel(db, b) is True
    assert quick.cancel(db, b) is True  # cancelled already
    assert quick.job_state(db, b) is JobState.CANCELLED
    assert quick.job_state(db, c) is JobState.DISCARDED
    assert _why(db, c) == f"dependency {b} was cancelled"
    drain(db, _app(ran))
    assert ran == ["a"]


def test_dependencies_last_two_settling_concurrently_release_once(
    exact_db: Database, queue: str
) -> None:
    db = exact_db
    ran: list[Any] = []
    a = quick.enqueue(db, queue, "work", "a")
    b = quick.enqueue(db, queue, "work", "b")
    c = quick.enqueue(db, queue, "work", "c", depends_on=[a, b])
    one, two = quick.claim(db, queue, "w", limit=2)
    tr1, tr2 = db.create_transaction(), db.create_transaction()
    assert quick.complete(tr1, one)
    assert quick.complete(tr2, two)
    assert commits(tr1)
    assert quick.job_state(db, c) is JobState.WAITING
    assert not commits(tr2)  # both rewrote c's held record: the second conflicts
    assert quick.complete(db, two)
    assert quick.job_state(db, c) is JobState.READY
    drain(db, _app(ran))
    assert ran == ["c"]
