"""Branch steps: the handler names a declared branch; the others are skipped with the
reason (and what only they lead to), and a join after the branches waits only for the
chosen path. An undeclared name fails the step; a branch listing a step that does not
follow it is refused before anything is written."""

from __future__ import annotations

from typing import Any

import pytest

import quick
from keyspace.protocol import Database
from quick.testing import drain
from tests.integration.workflows.driving import check_run, everything, pending
from workflow import InvalidStepOption, Workflow, result, retry_run, start_run


@pytest.fixture
def app() -> quick.App:
    made = quick.App()

    @made.job("route")
    def route(payload: Any, meta: quick.Meta) -> Any:
        return payload["go"]

    @made.job("echo")
    def echo(payload: Any, meta: quick.Meta) -> Any:
        if payload.get("fail") == meta.context.step:
            raise RuntimeError("boom")
        return {"step": meta.context.step, "after": sorted(meta.context.results)}

    return made


def branchy(tag: str) -> Workflow:
    return (
        Workflow(f"branch-{tag}")
        .branch("route", topic="route", branches={"big": ["big1"], "small": ["small1"]})
        .step("big1", topic="echo", after="route")
        .step("big2", topic="echo", after="big1")
        .step("small1", topic="echo", after="route")
        .step("join", topic="echo", after=["big2", "small1"])
        .step("always", topic="echo", after="route")
    )


@pytest.mark.parametrize(
    ("go", "ran", "skipped"),
    [("big", {"big1", "big2"}, {"small1"}), ("small", {"small1"}, {"big1", "big2"})],
)
def test_workflow_branch_runs_the_chosen_path_and_skips_the_rest_with_the_reason(
    db: Database, app: quick.App, queue: str, tag: str, go: str, ran: set[str], skipped: set[str]
) -> None:
    run_id = start_run(db, branchy(tag), {"go": go}, queue_id=queue)
    drain(db, app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["route"].output == go
    statuses = {key: step.status for key, step in view.steps.items()}
    assert {key for key, status in statuses.items() if status == "skipped"} == skipped
    assert ran | {"route", "join", "always"} == {
        key for key, status in statuses.items() if status == "succeeded"
    }
    first = sorted(skipped)[0]
    reasons = {view.steps[key].reason for key in skipped}
    assert f"branch step 'route' chose {go!r}" in reasons
    if first == "big1":
        assert view.steps["big2"].reason == "every step it runs after was skipped by a branch"
    # The join ran once, after the chosen path only; its results name both dependencies
    # it runs after, the skipped one with no output.
    assert view.steps["join"].output["after"] == ["big2", "small1"]
    chosen_last = "big2" if go == "big" else "small1"
    assert view.steps["join"].started_ms >= view.steps[chosen_last].finished_ms
    assert set(result(db, run_id)) == {"join", "always"}
    assert pending(db, queue) == 0


def test_workflow_branch_name_not_declared_fails_the_step_clearly(
    db: Database, app: quick.App, queue: str, tag: str
) -> None:
    run_id = start_run(db, branchy(tag), {"go": "medium"}, queue_id=queue)
    drain(db, app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "failed"
    assert view.steps["route"].error == (
        "returned 'medium', which is not a declared branch ('big', 'small')"
    )
    assert {view.steps[key].status for key in view.steps if key != "route"} == {"skipped"}
    assert pending(db, queue) == 0


def test_workflow_retry_keeps_the_steps_a_branch_left_out_skipped(
    db: Database, app: quick.App, queue: str, tag: str
) -> None:
    wf = (
        Workflow(f"branch-retry-{tag}")
        .branch("route", topic="route", branches={"big": ["big1"], "small": ["small1"]})
        .step("big1", topic="echo", after="route", max_attempts=1)
        .step("small1", topic="echo", after="route")
        .step("join", topic="echo", after=["big1", "small1"])
    )
    run_id = start_run(db, wf, {"go": "big", "fail": "big1"}, queue_id=queue)
    drain(db, app, queue_id=queue)
    assert check_run(db, run_id).status == "failed"
    retry_run(db, run_id)
    drain(db, app, queue_id=queue)  # big1 fails again: the input still says so
    view = check_run(db, run_id)
    assert view.steps["small1"].status == "skipped"
    assert view.steps["small1"].reason == "branch step 'route' chose 'big'"


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ({"big": ["nowhere"]}, "branch 'big' must list steps that run after 'route'"),
        ({"big": ["before"]}, "branch 'big' must list steps that run after 'route'"),
        ({}, "must map branch names to step keys"),
        ({"": ["x"]}, "names must be non-blank strings"),
    ],
)
def test_workflow_branch_bad_declarations_are_refused_before_any_write(
    db: Database, queue: str, tag: str, branches: Any, message: str
) -> None:
    before = everything(db)

    def build() -> Workflow:
        return (
            Workflow(f"bad-{tag}")
            .step("before", topic="echo")
            .branch("route", topic="route", branches=branches, after="before")
            .step("x", topic="echo", after="route")
        )

    with pytest.raises(InvalidStepOption) as caught:
        start_run(db, build(), {}, queue_id=queue)
    assert message in str(caught.value)
    assert everything(db) == before
