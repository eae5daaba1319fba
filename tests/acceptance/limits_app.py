"""An App for the queue-limit tests: ``--app tests.acceptance.limits_app:app``.

``timed`` jobs sleep ``payload`` seconds and append ``job_id start end attempt`` (wall
clock seconds) to ``$QUICK_TEST_OUT``; ``claimed`` jobs record when they were leased in
place of their start; on their first attempt ``stuck`` jobs record
their start and then hang (a worker is killed under them), later attempts finish.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

import quick

app = quick.App()


def _record(meta: quick.Meta, start: float, end: float) -> None:
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(f"{meta.job_id} {start:.6f} {end:.6f} {meta.attempt}\n")


@app.job("timed")
def timed(payload: Any, meta: quick.Meta) -> None:
    start = time.time()
    time.sleep(float(payload))
    _record(meta, start, time.time())


@app.job("claimed")
def claimed(payload: Any, meta: quick.Meta) -> None:
    # When the claim leased it: its lease deadline less the lease (``payload`` seconds,
    # the worker's --lease-seconds); a rate limit paces claims, whatever the load does to
    # when handlers then start.
    _record(meta, meta.lease_deadline_ms / 1000 - float(payload), time.time())


@app.job("stuck", loop="trio")
async def stuck(payload: Any, meta: quick.Meta) -> None:
    # async, so both stuck jobs start at once (blocking handlers share a lane thread)
    start = time.time()
    if meta.attempt == 1:
        _record(meta, start, -1.0)
        await trio.sleep(600)
    _record(meta, start, time.time())
