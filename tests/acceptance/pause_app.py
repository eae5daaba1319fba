"""An App for the paused-worker test: ``--app tests.acceptance.pause_app:app``.

``sleep`` jobs (and ``sleep_async`` ones, the same in trio) append
``start <job_id> <pid> <time>`` to ``$QUICK_TEST_OUT`` as they start, sleep for their
payload's seconds, then append ``end <job_id> <pid> <time>``: the handlers' own record of
where and when each job ran.
"""

from __future__ import annotations

import os
import time

import trio

import quick

app = quick.App()


def _record(event: str, job_id: str) -> None:
    at = time.time()  # before opening the file: a pause may come in between
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(f"{event} {job_id} {os.getpid()} {at:.6f}\n")


@app.job("sleep")
def sleep(payload: float, meta: quick.Meta) -> None:
    _record("start", meta.job_id)
    time.sleep(payload)
    _record("end", meta.job_id)


@app.job("sleep_async", loop="trio")
async def sleep_async(payload: float, meta: quick.Meta) -> None:
    _record("start", meta.job_id)
    await trio.sleep(payload)
    _record("end", meta.job_id)
