"""An App for the crash test: ``--app tests.acceptance.crash_app:app``.

``work`` jobs append ``job_id pid`` to ``$QUICK_TEST_OUT``; ``ledger`` jobs are
transactional and add 1 to ``effects/<job_id>`` in the same transaction that completes
them, so the store shows whether any effect was applied twice.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import quick
from keyspace.protocol import Transaction

app = quick.App()


@app.job("work")
def work(payload: Any, meta: quick.Meta) -> None:
    time.sleep(0.002)
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(f"{meta.job_id} {os.getpid()}\n")


@app.job("ledger")
def ledger(tr: Transaction, payload: Any, meta: quick.Meta) -> None:
    tr.add(b"effects/" + meta.job_id.encode(), struct.pack("<q", 1))
