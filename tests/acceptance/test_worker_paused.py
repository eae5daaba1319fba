"""A worker paused past its leases (SIGSTOP, a VM pause, a long GC) does not start, once
resumed, the claims it no longer holds."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import quick
from tests.acceptance.processes import record_lines, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.slow

QUEUE = "paused"
JOBS = 300
LEASE_SECONDS = 2.0


def _unfinished(url: str) -> int:
    with quick.open(url) as db:
        counts = quick.queue_counts(db, QUEUE)
    return counts["ready"] + counts["scheduled"] + counts["leased"]


@pytest.mark.parametrize("topic", ["slow", "slow_async"])
def test_worker_resumed_after_its_leases_expired_starts_none_of_its_stale_claims(
    tmp_path: Path, topic: str
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    out = tmp_path / "out.txt"
    with quick.open(url) as db:
        quick.enqueue_many(
            db, [{"queue_id": QUEUE, "topic": topic, "payload": i} for i in range(JOBS)]
        )
    app = "tests.acceptance.pause_app:app"
    lease = ("--lease-seconds", str(LEASE_SECONDS))
    # Four slots and a batch larger than the queue: the paused worker holds every job,
    # most of them claimed but not started.
    paused = start_worker(url, out, app, "--concurrency", "4", "--batch-size", "500", *lease)
    rescuer = None
    try:
        wait_until(lambda: len(record_lines(out)) >= 4, 60, "the first jobs to start")
        os.kill(paused.pid, signal.SIGSTOP)
        # Past every lease the paused worker holds; then another worker takes the jobs
        # over and completes them all while it stays stopped.
        rescuer = start_worker(url, out, app, "--concurrency", "32", *lease)
        wait_until(lambda: _unfinished(url) == 0, 120, "the other worker to finish every job")
        before_resume = len(record_lines(out))
        os.kill(paused.pid, signal.SIGCONT)
        # Long enough for the resumed worker to start what it still believes it holds,
        # and for its keeper to find those leases lost.
        time.sleep(3 * LEASE_SECONDS)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
        err = stop_worker(paused)
        if rescuer is not None:
            stop_worker(rescuer)
    assert paused.returncode == 0, err.decode()

    assert rescuer is not None
    records = record_lines(out)
    started_before_pause = {
        job_id
        for event, job_id, pid, _ in records[:before_resume]
        if event == "start" and int(pid) == paused.pid
    }
    completed_elsewhere = {
        job_id for event, job_id, pid, _ in records if event == "end" and int(pid) == rescuer.pid
    }
    # The paused worker held claims it had not started, and the other worker ran them all.
    assert len(started_before_pause) < JOBS // 10
    assert len(started_before_pause | completed_elsewhere) == JOBS
    restarted = [
        job_id
        for event, job_id, pid, _ in records[before_resume:]
        if event == "start" and int(pid) == paused.pid and job_id in completed_elsewhere
    ]
    assert restarted == [], f"the resumed worker started {len(restarted)} jobs it no longer held"
