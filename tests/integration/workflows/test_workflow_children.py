"""Child steps: a run of another workflow whose result is the step's output.

The child starts in the transaction that makes its step runnable (on its own queue if
given), a failed child fails the step per its attempts, cancelling the parent cancels
the chain of children, ``explain_run`` follows the chain, and an unregistered child or
a chain of child runs that would start itself is refused before anything is written.
"""

from __future__ import annotations

from typing import Any

import pytest

import quick
import workflow
from keyspace.protocol import Database
from quick.testing import drain
from tests.integration.workflows.driving import check_run, everything, pending
from workflow import (
    ChildCycle,
    UnknownWorkflow,
    Workflow,
    cancel_run,
    explain_run,
    inspect_run,
    result,
    signal,
    start_run,
)


@pytest.fixture
def app() -> quick.App:
    made = quick.App()

    @made.job("double", backoff=lambda attempt: 0)
    def double(payload: Any, meta: quick.Meta) -> Any:
        if payload == "fail":
            raise RuntimeError("child says no")
        return {"doubled": payload * 2, "results": meta.context.results}

    @made.job("prepare")
    def prepare(payload: Any, meta: quick.Meta) -> Any:
        return payload + 1

    return made


def test_workflow_child_step_completes_with_the_child_runs_result(
    db: Database, app: quick.App, queue: str, tag: str
) -> None:
    kid = workflow.register(Workflow(f"kid-{tag}").step("d", topic="double"))
    parent = (
        Workflow(f"parent-{tag}")
        .step("p", topic="prepare")
        .child("c", workflow=kid.name, after="p", queue_id=f"{queue}-kids")
    )
    run_id = start_run(db, parent, 20, queue_id=queue)
    drain(db, app, queue_id=queue)
    drain(db, app, queue_id=f"{queue}-kids")
    drain(db, app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    child_id = view.steps["c"].child_run
    assert child_id is not None
    child = check_run(db, child_id)
    assert (child.status, child.queue_id, child.input) == ("succeeded", f"{queue}-kids", 21)
    assert view.steps["c"].output == {"doubled": 42, "results": {}}
    assert result(db, run_id) == {"doubled": 42, "results": {}}


def test_workflow_failed_child_fails_the_step_after_its_attempts(
    db: Database, app: quick.App, queue: str, tag: str
) -> None:
    kid = Workflow(f"kid-{tag}").step("d", topic="double", max_attempts=1)
    parent = Workflow(f"parent-{tag}").child("c", workflow=kid, max_attempts=2)
    run_id = start_run(db, parent, "fail", queue_id=queue)
    drain(db, app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "failed"
    c = view.steps["c"]
    assert c.attempts == 2
    assert c.error is not None
    assert "failed: step 'd' failed: RuntimeError: child says no" in c.error
    assert pending(db, queue) == 0
    with pytest.raises(workflow.RunFailed) as caught:
        result(db, run_id)
    assert caught.value.step == "c"


def test_workflow_cancelling_the_parent_cancels_the_chain_and_explain_follows_it(
    db: Database, app: quick.App, queue: str, tag: str
) -> None:
    grandchild = Workflow(f"gc-{tag}").external("approve")
    kid = Workflow(f"kid-{tag}").child("g", workflow=grandchild)
    parent = Workflow(f"parent-{tag}").child("c", workflow=kid)
    run_id = start_run(db, parent, 1, queue_id=queue)
    child_id = inspect_run(db, run_id).steps["c"].child_run
    assert child_id is not None
    grandchild_id = inspect_run(db, child_id).steps["g"].child_run
    assert grandchild_id is not None
    said = str(explain_run(db, run_id))
    assert f"waiting for child run {child_id}" in said
    assert f"waiting for child run {grandchild_id}" in said
    assert "waiting for a signal on 'approve'" in said
    cancel_run(db, run_id)
    for each in (run_id, child_id, grandchild_id):
        assert check_run(db, each).status == "cancelled"
    with pytest.raises(workflow.InvalidRunState):
        signal(db, grandchild_id, "approve")


def test_workflow_child_signalled_lets_the_parent_finish_after_it(
    db: Database, app: quick.App, queue: str, tag: str
) -> None:
    kid = Workflow(f"kid-{tag}").external("approve")
    parent = Workflow(f"parent-{tag}").child("c", workflow=kid).step("d", topic="double", after="c")
    run_id = start_run(db, parent, 3, queue_id=queue)
    child_id = inspect_run(db, run_id).steps["c"].child_run
    assert child_id is not None
    signal(db, child_id, "approve", 5)
    drain(db, app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    child = inspect_run(db, child_id)
    assert child.finished_ms is not None
    assert view.finished_ms is not None
    assert child.finished_ms <= view.finished_ms


def test_workflow_child_not_registered_or_starting_itself_is_refused_before_any_write(
    db: Database, queue: str, tag: str
) -> None:
    before = everything(db)
    with pytest.raises(UnknownWorkflow) as unknown:
        start_run(db, Workflow(f"p-{tag}").child("c", workflow=f"nope-{tag}"), 1, queue_id=queue)
    assert f"child workflow 'nope-{tag}' is not registered" in str(unknown.value)
    selfish = workflow.register(Workflow(f"self-{tag}").child("c", workflow=f"self-{tag}"))
    with pytest.raises(ChildCycle) as direct:
        start_run(db, selfish, 1, queue_id=queue)
    assert direct.value.chain == [f"self-{tag}", f"self-{tag}"]
    workflow.register(Workflow(f"a-{tag}").child("b", workflow=f"b-{tag}"))
    workflow.register(
        Workflow(f"b-{tag}").step("x", topic="double").child("a", workflow=f"a-{tag}")
    )
    with pytest.raises(ChildCycle) as indirect:
        start_run(db, Workflow(f"top-{tag}").child("a", workflow=f"a-{tag}"), 1, queue_id=queue)
    assert f"a-{tag} -> b-{tag} -> a-{tag}" in str(indirect.value)
    assert everything(db) == before
