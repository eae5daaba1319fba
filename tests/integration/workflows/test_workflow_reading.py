"""Workflow runs on every engine: explaining and listing runs, hooks, large outputs.

Steps are driven deterministically with ``quick.claim`` and ``run_claim`` (the queue's
own synchronous path) unless the test says otherwise; :func:`check_run`
(:mod:`tests.integration.workflows.driving`) holds each run's invariants afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest

import quick
import workflow
from keyspace.protocol import Database
from quick.jobs import now_ms
from quick.outcomes import Outcome, run_claim
from quick.testing import drain
from tests.integration.workflows.driving import TERMINAL, Steps, check_run, claim_step, pending
from workflow import Workflow, cancel_run, explain_run, inspect_run, items, list_runs, start_run

# -- reading runs --------------------------------------------------------------------------


def test_workflow_explain_retry_pending_and_failed(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    steps.failing.add("a")
    wf = Workflow(f"explain-{tag}").step("a", topic="patient", max_attempts=2)
    run_id = start_run(db, wf, None, queue_id=queue)
    before = now_ms()
    assert run_claim(db, steps.app, claim_step(db, queue, "a")) is Outcome.REQUEUED
    pending = explain_run(db, run_id)
    assert pending.status == "running"
    assert set(pending.retries) == {"a"}
    assert pending.retries["a"] >= before + 30_000
    assert "1 step(s) waiting to retry" in pending.summary
    assert "step 'a' retries at" in str(pending)
    view = check_run(db, run_id)
    assert (view.steps["a"].status, view.steps["a"].error) == ("scheduled", "RuntimeError: boom a")
    drain(db, steps.app, queue_id=queue, with_scheduled=True)
    failed = explain_run(db, run_id)
    assert failed.status == "failed"
    assert failed.failed == {"a": "RuntimeError: boom a"}
    assert "step 'a' failed after its attempts ran out" in failed.summary
    assert "step 'a' failed: RuntimeError: boom a" in str(failed)
    assert any(f"quick runs retry {run_id}" in action for action in failed.next_actions)
    assert check_run(db, run_id).steps["a"].attempts == 2


def test_workflow_list_runs_filters_by_workflow_and_status(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    orders = Workflow(f"orders-{tag}").step("a", topic="work")
    orders_v2 = Workflow(f"orders-{tag}-v2").step("a", topic="work")  # a name's prefix
    done = start_run(db, orders, None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    waiting = start_run(db, orders, None, queue_id=f"{queue}-idle")
    gone = start_run(db, orders_v2, None, queue_id=f"{queue}-idle")
    cancel_run(db, gone)

    def ids(**filters: Any) -> set[str]:
        mine = {done, waiting, gone}
        return {run.run_id for run in list_runs(db, **filters) if run.run_id in mine}

    assert ids(workflow=orders.name) == {done, waiting}
    assert ids(workflow=orders_v2.name) == {gone}
    assert ids(workflow=orders.name, status="succeeded") == {done}
    assert ids(workflow=orders.name, status="running") == {waiting}
    assert ids(workflow=orders.name, status="cancelled") == set()
    assert ids(status="cancelled") == {gone}
    assert ids() == {done, waiting, gone}
    listed = list_runs(db, workflow=orders.name)
    assert [run.created_ms for run in listed] == sorted(
        (run.created_ms for run in listed), reverse=True
    )
    by_id = {run.run_id: run for run in listed}
    assert by_id[done].finished_ms is not None
    assert by_id[waiting].finished_ms is None
    assert by_id[done].queue_id == queue
    with pytest.raises(ValueError, match="nonsense"):
        list_runs(db, status="nonsense")


def test_workflow_list_runs_limit_keeps_the_newest(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"many-{tag}").step("a", topic="work")
    started = []
    for i in range(20):
        started.append(start_run(db, wf, i, queue_id=queue))
        while now_ms() <= inspect_run(db, started[-1]).created_ms:
            pass  # distinct creation times
    newest = [run.run_id for run in list_runs(db, workflow=wf.name, limit=5)]
    assert newest == started[::-1][:5]


def test_workflow_hooks_run_after_commit_as_hook_jobs(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    steps.failing.add("bad")
    seen: list[tuple[workflow.HookEvent, str]] = []

    def record(event: workflow.HookEvent) -> None:
        # What the hook can read is what was committed before it ran.
        seen.append((event, inspect_run(db, event.run_id).status))

    failing = (
        Workflow(f"hooked-{tag}")
        .step("ok", topic="work")
        .step("bad", topic="work", after="ok", max_attempts=1)
        .on_step_failed(record)
        .on_run_finished(record)
    )
    run_id = start_run(db, failing, None, queue_id=queue)
    assert run_claim(db, steps.app, claim_step(db, queue, "ok")) is Outcome.COMPLETED
    assert run_claim(db, steps.app, claim_step(db, queue, "bad")) is Outcome.FAILED
    assert seen == []  # not called from the transactions that recorded the facts
    hook_jobs = quick.list_jobs(db, queue)
    assert {job.topic for job in hook_jobs} == {items.HOOK_TOPIC}
    assert len(hook_jobs) == 2
    drain(db, steps.app, queue_id=queue)
    kinds = {(event.kind, event.step, event.status, event.error, status) for event, status in seen}
    assert kinds == {
        ("step_failed", "bad", "failed", "RuntimeError: boom bad", "failed"),
        ("run_finished", "bad", "failed", "RuntimeError: boom bad", "failed"),
    }
    assert {event.run_id for event, _ in seen} == {run_id}
    assert {event.workflow for event, _ in seen} == {failing.name}
    assert pending(db, queue) == 0

    seen.clear()
    fine = Workflow(f"hooked-ok-{tag}").step("ok", topic="work").on_run_finished(record)
    other = start_run(db, fine, None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    assert [(e.kind, e.run_id, e.status, status) for e, status in seen] in (
        [("run_finished", other, "succeeded", "succeeded")],
        # at least once: a 1021 on the faulty engine may run a hook job twice
        [("run_finished", other, "succeeded", "succeeded")] * 2,
    )


def test_workflow_large_outputs_do_not_strand_a_join(db: Database, queue: str, tag: str) -> None:
    app = quick.App()

    @app.job("big")
    def big(payload: Any, meta: quick.Meta) -> str:
        return "x" * 45_000  # each output is within the per-output limit

    @app.job("small")
    def small(payload: Any, meta: quick.Meta) -> str:
        return "done"

    wf = (
        Workflow(f"big-{tag}")
        .step("a", topic="big")
        .step("b", topic="big")
        .step("c", topic="big")
        .step("join", topic="small", after=["a", "b", "c"], max_attempts=1)
    )
    run_id = start_run(db, wf, None, queue_id=queue)
    drain(db, app, queue_id=queue, with_scheduled=True)
    view = check_run(db, run_id)
    assert view.status in TERMINAL, explain_run(db, run_id)
