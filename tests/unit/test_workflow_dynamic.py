"""Map, branch and child steps without a store: their builder errors, their stored form,
and the pure readiness decision that lets a join run after the branch that was chosen."""

from __future__ import annotations

from typing import Any

import pytest

from workflow import InvalidStepOption, UnknownDependency, Workflow
from workflow.definition import Definition, StepKind
from workflow.engine import unchosen
from workflow.records import StepRecord, StepStatus, readiness


def _step(status: StepStatus, pruned: bool = False) -> StepRecord:
    return StepRecord(run_id="r", key="k", status=status, pruned=pruned)


@pytest.mark.parametrize(
    ("dependencies", "decision"),
    [
        ([], "run"),
        ([_step(StepStatus.SUCCEEDED)], "run"),
        ([_step(StepStatus.SUCCEEDED), _step(StepStatus.SKIPPED, pruned=True)], "run"),
        ([_step(StepStatus.SKIPPED, pruned=True)] * 2, "prune"),
        ([_step(StepStatus.SUCCEEDED), _step(StepStatus.RUNNING)], "wait"),
        ([_step(StepStatus.SKIPPED)], "wait"),  # skipped by a failure, not by a branch
        ([_step(StepStatus.WAITING, pruned=True)], "wait"),
    ],
)
def test_readiness_runs_a_join_after_the_chosen_path_only(
    dependencies: list[StepRecord], decision: str
) -> None:
    assert readiness(dependencies) == decision


def test_unchosen_leaves_out_the_other_branches_but_not_steps_the_chosen_one_lists() -> None:
    branches = {"a": ("x", "both"), "b": ("y", "both"), "c": ()}
    assert unchosen(branches, "a") == ["y"]
    assert sorted(unchosen(branches, "c")) == ["both", "both", "x", "y"]


def test_map_branch_and_child_definitions_round_trip_through_their_stored_form() -> None:
    kid = Workflow("kid").step("k", topic="t")
    wf = (
        Workflow("dyn")
        .step("list", topic="t")
        .map("m", topic="t", over="list", max_attempts=3, timeout=5)
        .branch("b", topic="t", branches={"x": ["x1"], "y": "y1"}, after="m")
        .step("x1", topic="t", after="b")
        .step("y1", topic="t", after="b")
        .child("c", workflow=kid, after=["x1", "y1"], queue_id="other")
    )
    definition = wf.validate()
    again = Definition.from_record("dyn", definition.to_record())
    assert again == definition
    m, b, c = (again.steps[key] for key in ("m", "b", "c"))
    assert (m.kind, m.over, m.after, m.max_attempts, m.timeout) == (
        StepKind.MAP,
        "list",
        ("list",),
        3,
        5,
    )
    assert (b.kind, dict(b.branches or {})) == (StepKind.BRANCH, {"x": ("x1",), "y": ("y1",)})
    assert (c.kind, c.child, c.queue) == (StepKind.CHILD, "kid", "other")
    assert c.child_definition == kid.validate().to_record()
    # A plain step's stored form has none of the new fields (old records stay as they were).
    assert set(again.steps["list"].to_record()) == {"sk", "kd", "af", "t", "m", "to", "sl", "pr"}


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda wf: wf.map("m", topic="t", over=""), InvalidStepOption, "over must be a step key"),
        (lambda wf: wf.map("m", topic="", over="s"), InvalidStepOption, "topic"),
        (lambda wf: wf.map("m", topic="t", over="nope"), UnknownDependency, "unknown step 'nope'"),
        (lambda wf: wf.branch("b", topic="t", branches=[]), InvalidStepOption, "branches"),
        (lambda wf: wf.child("c", workflow=3), InvalidStepOption, "a Workflow or its name"),
        (
            lambda wf: wf.child("c", workflow="k", queue_id=" "),
            Exception,
            "queue_id",
        ),
    ],
)
def test_dynamic_step_options_are_refused_naming_the_problem(
    build: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        build(Workflow("bad").step("s", topic="t")).validate()
    assert message in str(caught.value)
