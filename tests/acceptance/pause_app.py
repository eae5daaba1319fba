"""An App for the paused-worker test: ``--app tests.acceptance.pause_app:app``.

``slow`` jobs (and ``slow_async`` ones, the same in trio) append
``start <job_id> <pid> <time>`` to ``$QUICK_TEST_OUT`` as they start, sleep 0.3 s, then
append ``end <job_id> <pid> <time>``: the handlers' own record of where and when each
job ran.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

import quick

app = quick.App()

#: How long each ``slow`` job runs, in seconds.
SLOW_SECONDS = 0.3


def _record(event: str, job_id: str) -> None:
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(f"{event} {job_id} {os.getpid()} {time.time():.6f}\n")


@app.job("slow")
def slow(payload: Any, meta: quick.Meta) -> None:
    _record("start", meta.job_id)
    time.sleep(SLOW_SECONDS)
    _record("end", meta.job_id)


@app.job("slow_async")
async def slow_async(payload: Any, meta: quick.Meta) -> None:
    _record("start", meta.job_id)
    await trio.sleep(SLOW_SECONDS)
    _record("end", meta.job_id)
