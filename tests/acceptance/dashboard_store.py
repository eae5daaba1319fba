"""A small store for the dashboard tests: queues, a dead letter, runs, cron, rot.

``seed`` fills a database with what every dashboard page has to show, including a
payload carrying ``<script>`` and records that do not decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import quick
import workflow
from keyspace.layout import CRON, DEAD_LETTERS, WF_BY_STATUS, WF_RUNS, queue_keys
from keyspace.protocol import Database, Transaction
from tests.acceptance.cli_workflow_app import FLAKY, ORDER, app

#: A payload that must reach the browser as text, never as markup.
SCRIPT = "<script>alert('owned')</script>"
#: Bytes no codec reads (a format byte, then an invalid msgpack byte).
ROT = b"\x01\xc1garbage"


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeded:
    """The ids the tests look for."""

    queue: str
    job: str
    script_job: str
    dead: str
    rotten_job: str
    order_run: str
    flaky_run: str


def dead_letter(db: Database, queue: str, payload: object, error: str = "boom") -> str:
    """A job on ``queue`` that failed its only attempt: a dead letter (claimed first, by
    its priority, whatever else the queue holds)."""
    job_id = quick.enqueue(db, queue, "email:send", payload, max_attempts=1, priority=-(10**6))
    (held,) = quick.claim(db, queue, "seed-worker", limit=1)
    assert held.job_id == job_id
    assert quick.fail(db, held, error) == "dead_lettered"
    return job_id


def _drain(db: Database, queue: str) -> None:
    while claims := quick.claim(db, queue, "seed-worker", limit=10):
        for claim in claims:
            quick.run_claim(db, app, claim)


def seed(db: Database) -> Seeded:
    """Fill ``db`` with one of everything the pages show."""
    queue = "tenant-1"
    dead = dead_letter(db, queue, {"to": SCRIPT}, error=f"failed: {SCRIPT}")
    job = quick.enqueue(db, queue, "email:send", {"to": "ada@example.com"}, priority=5)
    script_job = quick.enqueue(db, queue, "email:send", {"html": SCRIPT}, delay=600)
    quick.enqueue(db, "tenant-2", "report:build", {"n": 1})
    rotten_job = quick.enqueue(db, "tenant-rot", "t", "will rot")
    order_run = workflow.start_run(db, ORDER, {"order": 7}, queue_id="wf-tenant")
    flaky_run = workflow.start_run(db, FLAKY, {"order": 8}, queue_id="wf-tenant")
    _drain(db, "wf-tenant")
    quick.schedule(db, "nightly", "0 3 * * *", queue, "report:build", {"who": SCRIPT})

    def rot(tr: Transaction) -> None:
        tr.set(queue_keys("tenant-rot").job(rotten_job), ROT)
        tr.set(DEAD_LETTERS.pack(("tenant-rot", "rotten-dead")), ROT)
        tr.set(CRON.pack(("rotten-cron",)), ROT)
        tr.set(WF_RUNS.pack(("rotten-run",)), ROT)
        tr.set(WF_BY_STATUS.pack(("running", "order", "rotten-run")), b"")

    db.transact(rot)
    return Seeded(
        queue=queue,
        job=job,
        script_job=script_job,
        dead=dead,
        rotten_job=rotten_job,
        order_run=order_run,
        flaky_run=flaky_run,
    )
