"""Workflow runs on every engine: signals and sleep steps.

Steps are driven deterministically with ``quick.claim`` and ``run_claim`` (the queue's
own synchronous path) unless the test says otherwise; :func:`check_run`
(:mod:`tests.integration.workflows.driving`) holds each run's invariants afterwards.
"""

from __future__ import annotations

import pytest

import quick
import workflow
from keyspace.protocol import Database
from quick.jobs import now_ms
from quick.outcomes import Outcome, run_claim
from quick.testing import drain
from tests.integration.workflows.driving import OWNER, Steps, check_run, settle_claim
from workflow import (
    InvalidRunState,
    InvalidSignal,
    RunNotFound,
    Workflow,
    cancel_run,
    explain_run,
    inspect_run,
    items,
    start_run,
)

# -- signals and timers --------------------------------------------------------------------


def test_workflow_signal_before_the_step_is_reached_completes_it_on_arrival(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = (
        Workflow(f"early-{tag}")
        .step("a", topic="work")
        .external("approve", after="a")
        .step("b", topic="work", after="approve")
    )
    run_id = start_run(db, wf, None, queue_id=queue)
    workflow.signal(db, run_id, "approve", {"by": "ops"})
    early = check_run(db, run_id)
    assert (early.steps["approve"].status, early.steps["approve"].signalled) == ("waiting", True)
    assert explain_run(db, run_id).awaiting_signal == []
    drain(db, steps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["approve"].output == {"by": "ops"}
    assert view.steps["b"].output["results"] == {"approve": {"by": "ops"}}


def test_workflow_signal_after_the_step_is_reached_completes_it(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"late-{tag}").step("a", topic="work").external("approve", after="a")
    run_id = start_run(db, wf, None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    waiting = explain_run(db, run_id)
    assert waiting.status == "running"
    assert waiting.awaiting_signal == ["approve"]
    assert "waiting for a signal on 'approve'" in waiting.summary
    assert "waiting for signal on step 'approve'" in str(waiting)
    assert any(f"quick signal {run_id} approve" in a for a in waiting.next_actions)
    workflow.signal(db, run_id, "approve", 42)
    view = check_run(db, run_id)
    assert (view.status, view.steps["approve"].output) == ("succeeded", 42)


def test_workflow_signal_errors_name_run_and_step(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"signals-{tag}").step("a", topic="work").external("e").external("f")
    run_id = start_run(db, wf, None, queue_id=queue)
    with pytest.raises(InvalidSignal) as caught:
        workflow.signal(db, run_id, "a")
    assert (caught.value.run_id, caught.value.step) == (run_id, "a")
    assert "task step" in caught.value.reason
    with pytest.raises(InvalidSignal) as caught:
        workflow.signal(db, run_id, "nope")
    assert caught.value.step == "nope"
    workflow.signal(db, run_id, "e", 1)
    with pytest.raises(InvalidSignal) as caught:
        workflow.signal(db, run_id, "e", 2)
    assert "already been signalled" in caught.value.reason
    assert inspect_run(db, run_id).steps["e"].output == 1
    with pytest.raises(RunNotFound) as not_found:
        workflow.signal(db, "no-such-run", "e")
    assert not_found.value.run_id == "no-such-run"
    cancel_run(db, run_id)
    with pytest.raises(InvalidRunState) as ended:
        workflow.signal(db, run_id, "f")
    assert (ended.value.status, ended.value.action) == ("cancelled", "signal")
    assert check_run(db, run_id).steps["f"].status == "cancelled"


def test_workflow_sleep_step_is_claimable_only_once_its_time_has_come(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = (
        Workflow(f"timer-{tag}")
        .step("a", topic="work")
        .sleep("wait", seconds=60, after="a")
        .step("b", topic="work", after="wait")
    )
    run_id = start_run(db, wf, None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    sleeping = check_run(db, run_id)
    due = sleeping.steps["wait"].due_ms
    assert due is not None
    assert due == sleeping.steps["a"].finished_ms + 60_000
    assert explain_run(db, run_id).timers == {"wait": due}
    assert "timer 'wait' fires at" in str(explain_run(db, run_id))
    assert quick.claim(db, queue, OWNER, now_ms=now_ms()) == []
    assert quick.claim(db, queue, OWNER, now_ms=due - 1) == []
    (timer,) = quick.claim(db, queue, OWNER, now_ms=due)
    assert timer.topic == items.SLEEP_TOPIC
    assert settle_claim(db, steps.app, timer) is Outcome.COMPLETED
    drain(db, steps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["wait"].output is None
    assert view.steps["b"].output["results"] == {"wait": None}
    assert steps.calls(db, run_id) == {"a": 1, "b": 1}


def test_workflow_sleep_step_settles_with_run_claim(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    run_id = start_run(db, Workflow(f"nap-{tag}").sleep("z", seconds=1), None, queue_id=queue)
    (timer,) = quick.claim(db, queue, OWNER, now_ms=now_ms() + 1_000)
    assert run_claim(db, steps.app, timer) is Outcome.COMPLETED
    assert inspect_run(db, run_id).status == "succeeded"
