"""An App for the CLI tests: ``--app tests.acceptance.jobs_app:app``.

Each job appends its payload's ``n`` and the worker's pid to the file in ``$QUICK_TEST_OUT``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import quick

app = quick.App()


@app.job("record")
def record(payload: Any, meta: quick.Meta) -> None:
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(f"{payload['n']} {os.getpid()}\n")
    time.sleep(payload.get("sleep", 0))
