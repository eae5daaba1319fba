"""Workflow runs on every engine, run by the trio consumer.

Steps are driven deterministically with ``quick.claim`` and ``run_claim`` (the queue's
own synchronous path) unless the test says otherwise; :func:`check_run`
(:mod:`tests.integration.workflows.driving`) holds each run's invariants afterwards.
"""

from __future__ import annotations

from typing import Any

import trio

import quick
from keyspace.protocol import Database
from tests.integration.workflows.driving import TERMINAL, Steps, check_run, consume
from workflow import Workflow, inspect_run, list_runs, start_run

# -- the trio consumer ---------------------------------------------------------------------


def test_workflow_consumer_runs_concurrent_diamonds_each_step_once(
    db: Database, steps: Steps, tag: str
) -> None:
    wf = (
        Workflow(f"c-diamond-{tag}")
        .step("a", topic="work")
        .step("b", topic="work", after="a")
        .step("c", topic="work", after="a")
        .step("d", topic="work", after=["b", "c"])
    )
    runs = [start_run(db, wf, i, queue_id=f"{tag}-{i % 3}") for i in range(12)]

    def finished() -> bool:
        return all(run.status in TERMINAL for run in list_runs(db, workflow=wf.name))

    consume(db, steps.app, finished)
    for i, run_id in enumerate(runs):
        view = check_run(db, run_id)
        assert view.status == "succeeded"
        assert steps.calls(db, run_id) == {"a": 1, "b": 1, "c": 1, "d": 1}
        d = view.steps["d"].output
        assert d["input"] == i
        assert d["results"] == {"b": view.steps["b"].output, "c": view.steps["c"].output}


def test_workflow_consumer_enforces_the_step_timeout(db: Database, queue: str, tag: str) -> None:
    app = quick.App()

    @app.job("stuck", loop="trio")  # no timeout of its own: the step's applies
    async def stuck(payload: Any, meta: quick.Meta) -> None:
        await trio.sleep(30)

    wf = Workflow(f"timeout-{tag}").step("s", topic="stuck", timeout=0.05, max_attempts=1)
    run_id = start_run(db, wf, None, queue_id=queue)
    consume(db, app, lambda: inspect_run(db, run_id).status in TERMINAL)
    view = check_run(db, run_id)
    assert view.status == "failed"
    assert view.steps["s"].error is not None
    assert view.steps["s"].error.startswith("TimeoutError")
