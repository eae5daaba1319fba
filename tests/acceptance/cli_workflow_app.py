"""An App with workflow steps for the CLI tests: ``--app tests.acceptance.cli_workflow_app:app``.

``ORDER`` is fetch -> (a, b) -> approve (an external step after a) -> join (after approve
and b). ``FLAKY`` is a step that always fails, and one that would run after it.
"""

from __future__ import annotations

from typing import Any

import quick
import workflow

app = quick.App()


@app.job("wf:work")
def work(payload: Any, meta: quick.Meta) -> str:
    return f"{meta.context.step} done"


@app.job("wf:boom", max_attempts=1)
def boom(payload: Any, meta: quick.Meta) -> None:
    raise RuntimeError("kaboom")


ORDER = (
    workflow.Workflow("order")
    .step("fetch", topic="wf:work")
    .step("a", topic="wf:work", after=["fetch"])
    .step("b", topic="wf:work", after=["fetch"])
    .external("approve", after=["a"])
    .step("join", topic="wf:work", after=["approve", "b"])
)
FLAKY = (
    workflow.Workflow("flaky").step("x", topic="wf:boom").step("y", topic="wf:work", after=["x"])
)
