"""An App for the migration test: ``--app tests.acceptance.migrate_app:app``.

``record`` jobs append ``job_id queue priority pid`` to ``$QUICK_TEST_OUT``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import quick

app = quick.App()


@app.job("record")
def record(payload: Any, meta: quick.Meta) -> None:
    time.sleep(0.003)
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(f"{meta.job_id} {meta.queue_id} {payload['p']} {os.getpid()}\n")
