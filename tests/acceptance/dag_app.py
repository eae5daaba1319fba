"""An App and a 10-step workflow for the process test: ``--app tests.acceptance.dag_app:app``.

Every step runs the ``step`` handler, which appends ``run_id step pid`` to
``$QUICK_TEST_OUT`` and returns one more than the sum of its dependencies' outputs, so
the last step's output (:data:`FINAL`) shows every result reached its successors.
"""

from __future__ import annotations

import os
from typing import Any

import quick
from workflow import StepContext, Workflow

app = quick.App()

#: A chain with a fan-out/fan-in at each end: s1 -> s2,s3,s4 -> s5 -> s6 -> s7 -> s8,s9 -> s10.
FLOW = (
    Workflow("ten-steps")
    .step("s1", topic="step")
    .step("s2", topic="step", after="s1")
    .step("s3", topic="step", after="s1")
    .step("s4", topic="step", after="s1")
    .step("s5", topic="step", after=["s2", "s3", "s4"])
    .step("s6", topic="step", after="s5")
    .step("s7", topic="step", after="s6")
    .step("s8", topic="step", after="s7")
    .step("s9", topic="step", after="s7")
    .step("s10", topic="step", after=["s8", "s9"])
)

#: The output of s10: s1=1, s2..s4=2, s5=7, s6=8, s7=9, s8=s9=10, s10=21.
FINAL = 21


@app.job("step")
def step(payload: Any, meta: quick.Meta) -> int:
    context = meta.context
    assert isinstance(context, StepContext)
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(f"{context.run_id} {context.step} {os.getpid()}\n")
    return 1 + sum(int(value) for value in context.results.values())
