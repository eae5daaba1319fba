"""Pause holds retries: a failed attempt during a pause waits, and resume keeps the budget."""

from __future__ import annotations

from pathlib import Path

import quick
import workflow


def test_workflow_pause_holds_the_retry_of_a_step_that_failed_while_paused(
    tmp_path: Path,
) -> None:
    app = quick.App()
    attempts: list[int] = []

    @app.job("flaky", max_attempts=3, backoff=lambda attempt: 0.0)
    def flaky(payload: object, meta: quick.Meta) -> None:
        attempts.append(meta.attempt)
        if meta.attempt == 1:
            raise RuntimeError("the first attempt fails")

    wf = workflow.Workflow("paused-retry").step("s", topic="flaky")
    with quick.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
        run_id = workflow.start_run(db, wf, None, queue_id="q")
        (claim,) = quick.claim(db, "q", "w")
        workflow.pause_run(db, run_id)  # s is running: it may finish, nothing new starts
        assert quick.run_claim(db, app, claim) == quick.Outcome.REQUEUED
        for again in quick.claim(db, "q", "w"):
            quick.run_claim(db, app, again)
        assert attempts == [1], "a second attempt started while the run was paused"


def test_workflow_pause_resume_keeps_a_steps_attempt_budget(tmp_path: Path) -> None:
    app = quick.App()
    attempts: list[int] = []

    @app.job("bad", max_attempts=2, backoff=lambda attempt: 0.0)
    def bad(payload: object, meta: quick.Meta) -> None:
        attempts.append(meta.attempt)
        raise RuntimeError("always fails")

    wf = workflow.Workflow("paused-budget").step("s", topic="bad")
    with quick.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
        run_id = workflow.start_run(db, wf, None, queue_id="q")
        for _ in range(3):
            for claim in quick.claim(db, "q", "w"):
                quick.run_claim(db, app, claim)
            if workflow.inspect_run(db, run_id).status == "failed":
                break
            workflow.pause_run(db, run_id)
            workflow.resume_run(db, run_id)
        assert len(attempts) == 2, f"max_attempts=2, yet the handler ran {len(attempts)} times"
        assert workflow.inspect_run(db, run_id).status == "failed"


def test_workflow_retry_run_keeps_a_signal_that_arrived_before_its_step(tmp_path: Path) -> None:
    app = quick.App()
    failing = [True]

    @app.job("flaky", max_attempts=1)
    def flaky(payload: object, meta: quick.Meta) -> str:
        if failing[0]:
            raise RuntimeError("down")
        return "up"

    wf = workflow.Workflow("early-signal").step("a", topic="flaky").external("b", after=["a"])
    with quick.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
        run_id = workflow.start_run(db, wf, None, queue_id="q")
        workflow.signal(db, run_id, "b", {"ok": 1})
        for claim in quick.claim(db, "q", "w"):
            quick.run_claim(db, app, claim)
        assert workflow.inspect_run(db, run_id).steps["b"].status == "skipped"
        failing[0] = False
        workflow.retry_run(db, run_id)
        for claim in quick.claim(db, "q", "w"):
            quick.run_claim(db, app, claim)
        view = workflow.inspect_run(db, run_id)
        assert view.status == "succeeded"
        assert view.steps["b"].output == {"ok": 1}
