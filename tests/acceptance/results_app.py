"""An App for the result tests: ``--app tests.acceptance.results_app:app``."""

from __future__ import annotations

from typing import Any

import trio

import quick

app = quick.App()


@app.job("add")
def add(payload: Any, meta: quick.Meta) -> Any:
    return {"sum": sum(payload), "job": meta.job_id}


@app.job("async")
async def later(payload: Any, meta: quick.Meta) -> Any:
    await trio.sleep(0.01)
    return ["async", payload]


@app.job("fail", max_attempts=1)
def fail(payload: Any, meta: quick.Meta) -> Any:
    raise RuntimeError(f"failed on {payload}")
