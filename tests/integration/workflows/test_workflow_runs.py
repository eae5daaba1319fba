"""Workflow runs on every engine: starting, joining, failing and retrying runs.

Steps are driven deterministically with ``quick.claim`` and ``run_claim`` (the queue's
own synchronous path) unless the test says otherwise; :func:`check_run`
(:mod:`tests.integration.workflows.driving`) holds each run's invariants afterwards.
"""

from __future__ import annotations

import pytest

import workflow
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from quick.testing import drain
from tests.integration.workflows.driving import (
    TERMINAL_EVENTS,
    Steps,
    check_run,
    ends,
    everything,
    pending,
)
from workflow import (
    InvalidRunState,
    Workflow,
    inspect_run,
    list_runs,
    resume_run,
    retry_run,
    start_run,
)
from workflow import journal as events

# -- running -------------------------------------------------------------------------------


def test_workflow_diamond_joins_once_after_both_branches(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = (
        Workflow(f"diamond-{tag}")
        .step("a", topic="work")
        .step("b", topic="work", after="a")
        .step("c", topic="work", after="a")
        .step("d", topic="work", after=["b", "c"])
    )
    run_id = start_run(db, wf, {"n": 1}, queue_id=queue, app=steps.app)
    assert inspect_run(db, run_id).status == "running"
    drain(db, steps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert steps.calls(db, run_id) == {"a": 1, "b": 1, "c": 1, "d": 1}
    d = view.steps["d"]
    assert d.output["input"] == {"n": 1}
    assert d.output["results"] == {"b": view.steps["b"].output, "c": view.steps["c"].output}
    assert view.steps["b"].output["results"] == {"a": view.steps["a"].output}
    assert {key: (s.status, s.attempts) for key, s in view.steps.items()} == dict.fromkeys(
        "abcd", ("succeeded", 1)
    )
    for step in view.steps.values():
        assert step.started_ms is not None
        assert step.finished_ms is not None
        assert step.started_ms <= step.finished_ms
    # d started only after both b and c finished.
    assert d.started_ms >= max(view.steps["b"].finished_ms, view.steps["c"].finished_ms)
    assert view.finished_ms is not None
    assert pending(db, queue) == 0


def test_workflow_start_is_idempotent_and_writes_nothing_the_second_time(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"idem-{tag}").step("a", topic="work")
    first = start_run(db, wf, 1, queue_id=queue, idempotency_key="order-7")
    before = everything(db)
    again = start_run(db, wf, 2, queue_id=queue, idempotency_key="order-7")
    assert again == first
    assert everything(db) == before
    other_wf = Workflow(f"idem2-{tag}").step("a", topic="work")
    other = start_run(db, other_wf, 1, queue_id=queue, idempotency_key="order-7")
    assert other != first
    assert [run.run_id for run in list_runs(db, workflow=wf.name)] == [first]
    assert inspect_run(db, first).input == 1
    drain(db, steps.app, queue_id=queue)
    assert steps.calls(db, first) == {"a": 1}


def test_workflow_start_joins_the_callers_transaction(
    db: Database, steps: Steps, queue: str, tag: str, space: Subspace
) -> None:
    wf = Workflow(f"joined-{tag}").step("a", topic="work")
    before = everything(db)

    def rolled_back(tr: Transaction) -> None:
        start_run(tr, wf, 1, queue_id=queue)
        raise LookupError("the caller changed its mind")

    with pytest.raises(LookupError):
        db.transact(rolled_back)
    assert everything(db) == before
    assert list_runs(db, workflow=wf.name) == []

    def committed(tr: Transaction) -> str:
        tr.set(space.pack(("order",)), b"placed")
        return start_run(tr, wf, 1, queue_id=queue, idempotency_key="order-1")

    # Retried bodies (1020/1021 on the faulty engine) start the run once, by its key.
    run_id = db.transact(committed)
    assert [run.run_id for run in list_runs(db, workflow=wf.name)] == [run_id]
    assert db.transact(lambda tr: tr.get(space.pack(("order",)))) == b"placed"
    drain(db, steps.app, queue_id=queue)
    assert check_run(db, run_id).status == "succeeded"


def test_workflow_step_out_of_attempts_fails_the_run_and_skips_the_rest(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    steps.failing.add("a")
    wf = (
        Workflow(f"fails-{tag}")
        .step("a", topic="work", max_attempts=2)
        .step("b", topic="work", after="a")
        .step("c", topic="work", after="b")
        .external("gate")
        .step("d", topic="work", after="gate")
    )
    run_id = start_run(db, wf, None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "failed"
    assert ends(view) == [events.RUN_FAILED]
    a = view.steps["a"]
    assert (a.status, a.attempts, a.error) == ("failed", 2, "RuntimeError: boom a")
    reasons = {key: (s.status, s.reason) for key, s in view.steps.items() if key != "a"}
    assert reasons == {
        "b": ("skipped", "depends on step 'a', which failed"),
        "c": ("skipped", "depends on step 'a', which failed"),
        "gate": ("skipped", "the run failed at step 'a'"),
        "d": ("skipped", "the run failed at step 'a'"),
    }
    assert steps.calls(db, run_id) == {}
    assert pending(db, queue) == 0
    with pytest.raises(InvalidRunState):
        workflow.signal(db, run_id, "gate")


def test_workflow_retry_reruns_failed_and_skipped_steps_and_keeps_the_rest(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    steps.failing.add("b")
    wf = (
        Workflow(f"retry-{tag}")
        .step("a", topic="work")
        .step("b", topic="work", after="a", max_attempts=1)
        .step("c", topic="work", after="b")
    )
    run_id = start_run(db, wf, None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    failed = check_run(db, run_id)
    assert failed.status == "failed"
    with pytest.raises(InvalidRunState):
        resume_run(db, run_id)  # a failed run is retried, not resumed
    steps.failing.clear()
    retry_run(db, run_id)
    assert inspect_run(db, run_id).status == "running"
    drain(db, steps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert steps.calls(db, run_id) == {"a": 1, "b": 1, "c": 1}
    assert view.steps["a"].output == failed.steps["a"].output
    assert view.steps["a"].finished_ms == failed.steps["a"].finished_ms
    assert (view.steps["b"].attempts, view.steps["b"].error) == (2, None)
    kinds = [e.kind for e in view.journal]
    assert [k for k in kinds if k in TERMINAL_EVENTS or k == events.RUN_RETRIED] == [
        events.RUN_FAILED,
        events.RUN_RETRIED,
        events.RUN_SUCCEEDED,
    ]
    with pytest.raises(InvalidRunState) as caught:
        retry_run(db, run_id)
    assert (caught.value.status, caught.value.action) == ("succeeded", "retry")
