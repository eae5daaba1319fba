"""Fixtures of the workflow tests: names unique per test, and the counting step app."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import pytest

import quick
import workflow
from keyspace.protocol import Transaction
from keyspace.subspace import Subspace
from tests.integration.workflows.driving import Steps


@pytest.fixture
def tag() -> str:
    """A prefix for the test's queue and workflow names (the fdb engine shares a keyspace)."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def queue(tag: str) -> str:
    return f"{tag}-q"


@pytest.fixture
def steps(space: Subspace) -> Steps:
    app = quick.App()
    made = Steps(app=app, space=space)

    def work(tr: Transaction, payload: Any, meta: quick.Meta) -> dict[str, Any]:
        context = meta.context
        assert isinstance(context, workflow.StepContext)
        if context.step in made.failing:
            raise RuntimeError(f"boom {context.step}")
        tr.add(space.pack(("calls", context.run_id, context.step)), struct.pack("<q", 1))
        return {"step": context.step, "input": payload, "results": context.results}

    app.job("work", backoff=lambda attempt: 0)(work)
    app.job("patient", backoff=lambda attempt: 30)(work)
    return made
