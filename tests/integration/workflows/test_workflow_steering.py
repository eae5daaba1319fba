"""Workflow runs on every engine: cancel, pause and resume.

Steps are driven deterministically with ``quick.claim`` and ``run_claim`` (the queue's
own synchronous path) unless the test says otherwise; :func:`check_run`
(:mod:`tests.integration.workflows.driving`) holds each run's invariants afterwards.
"""

from __future__ import annotations

import pytest

import quick
from keyspace.protocol import Database
from quick.outcomes import Outcome, run_claim
from quick.testing import drain
from tests.integration.workflows.driving import Steps, check_run, claim_step, ends, pending
from workflow import (
    InvalidRunState,
    RunNotFound,
    Workflow,
    cancel_run,
    explain_run,
    inspect_run,
    pause_run,
    resume_run,
    start_run,
)
from workflow import journal as events

# -- cancel, pause, resume ---------------------------------------------------------------


def test_workflow_cancel_racing_a_running_step_fences_its_late_result(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"cancel-{tag}").step("a", topic="work").step("b", topic="work", after="a")
    run_id = start_run(db, wf, None, queue_id=queue)
    claim = claim_step(db, queue, "a")
    assert inspect_run(db, run_id).steps["a"].status == "running"
    cancel_run(db, run_id)
    cancelled = check_run(db, run_id)
    assert cancelled.status == "cancelled"
    assert {k: (s.status, s.reason) for k, s in cancelled.steps.items()} == {
        "a": ("cancelled", "the run was cancelled"),
        "b": ("cancelled", "the run was cancelled"),
    }
    # The late result completes its queue item and nothing else.
    assert run_claim(db, steps.app, claim) is Outcome.COMPLETED
    view = check_run(db, run_id)
    assert view.journal == cancelled.journal
    assert view.status == "cancelled"
    assert ends(view) == [events.RUN_CANCELLED]
    assert quick.job_state(db, claim.job_id) is quick.JobState.COMPLETED
    assert pending(db, queue) == 0
    assert drain(db, steps.app, queue_id=queue) == {}
    cancel_run(db, run_id)  # cancelling a cancelled run does nothing
    assert inspect_run(db, run_id).journal == cancelled.journal
    with pytest.raises(InvalidRunState):
        resume_run(db, run_id)


def test_workflow_cancel_withdraws_queued_steps(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"cancel-q-{tag}").step("a", topic="work").step("b", topic="work")
    run_id = start_run(db, wf, None, queue_id=queue)
    assert pending(db, queue) == 2
    cancel_run(db, run_id)
    assert pending(db, queue) == 0
    assert check_run(db, run_id).status == "cancelled"
    done = start_run(db, Workflow(f"done-{tag}").step("a", topic="work"), None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    with pytest.raises(InvalidRunState) as caught:
        cancel_run(db, done)
    assert (caught.value.run_id, caught.value.status) == (done, "succeeded")
    with pytest.raises(RunNotFound):
        cancel_run(db, "no-such-run")


def test_workflow_pause_stops_new_steps_and_resume_continues_where_it_stopped(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = (
        Workflow(f"pause-{tag}")
        .step("a", topic="work")
        .step("b", topic="work", after="a")
        .step("c", topic="work", after="b")
    )
    run_id = start_run(db, wf, None, queue_id=queue)
    assert run_claim(db, steps.app, claim_step(db, queue, "a")) is Outcome.COMPLETED
    running_b = claim_step(db, queue, "b")
    pause_run(db, run_id)
    pause_run(db, run_id)  # pausing a paused run does nothing
    # The running step finishes; its successor does not start.
    assert run_claim(db, steps.app, running_b) is Outcome.COMPLETED
    paused = check_run(db, run_id)
    assert paused.status == "paused"
    assert {k: s.status for k, s in paused.steps.items()} == {
        "a": "succeeded",
        "b": "succeeded",
        "c": "waiting",
    }
    assert pending(db, queue) == 0
    explanation = explain_run(db, run_id)
    assert explanation.status == "paused"
    assert any("resume" in action for action in explanation.next_actions)
    resume_run(db, run_id)
    drain(db, steps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert steps.calls(db, run_id) == {"a": 1, "b": 1, "c": 1}
    assert view.steps["c"].output["results"] == {"b": view.steps["b"].output}


def test_workflow_pause_withdraws_queued_steps_until_resumed(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"hold-{tag}").step("a", topic="work").step("b", topic="work", after="a")
    run_id = start_run(db, wf, None, queue_id=queue)
    pause_run(db, run_id)
    assert pending(db, queue) == 0
    held = check_run(db, run_id)
    assert held.steps["a"].status == "waiting"
    assert [e.kind for e in held.journal if e.step == "a"] == [
        events.STEP_SCHEDULED,
        events.STEP_HELD,
    ]
    assert drain(db, steps.app, queue_id=queue) == {}
    resume_run(db, run_id)
    resume_run(db, run_id)  # resuming a running run does nothing
    drain(db, steps.app, queue_id=queue)
    assert check_run(db, run_id).status == "succeeded"
    assert steps.calls(db, run_id) == {"a": 1, "b": 1}
    with pytest.raises(InvalidRunState):
        pause_run(db, run_id)


def test_workflow_pause_and_resume_keep_a_retrying_steps_attempts(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    steps.failing.add("a")
    wf = Workflow(f"budget-{tag}").step("a", topic="work", max_attempts=2)
    run_id = start_run(db, wf, None, queue_id=queue)
    assert run_claim(db, steps.app, claim_step(db, queue, "a")) is Outcome.REQUEUED
    pause_run(db, run_id)
    resume_run(db, run_id)
    drain(db, steps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert (view.status, view.steps["a"].attempts) == ("failed", 2)
