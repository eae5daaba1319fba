"""A worker paused past its leases (SIGSTOP, a VM pause, a long GC) does not start, once
resumed, the claims it no longer holds."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path

import pytest

import quick
from tests.acceptance.processes import record_lines, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.slow

QUEUE = "paused"
FAST, SLOW = 200, 200
#: Below the consumer's stall threshold (consumer.sizing.STALL_SECONDS): the worker keeps
#: the slow jobs it leased instead of handing them back, as a worker whose jobs ran
#: faster than it could start them would.
SLOW_SECONDS = 0.08
LEASE_SECONDS = 2.0


def _pause_outside_commit(pid: int, lock_file: Path) -> None:
    """SIGSTOP ``pid`` at a moment it does not hold the store's writer lock.

    A writer paused mid-commit keeps the embedded engine's cross-process writer lock
    until it resumes, which would stall the other worker's commits too (a limit of the
    embedded engine the README states; a FoundationDB client holds no such lock).
    """
    fd = os.open(lock_file, os.O_RDWR)
    try:
        for _ in range(1000):
            os.kill(pid, signal.SIGSTOP)
            while Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "T":
                time.sleep(0.0005)  # the stop is delivered asynchronously
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.kill(pid, signal.SIGCONT)
                time.sleep(0.001)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        raise AssertionError("the worker held the writer lock at every try to pause it")
    finally:
        os.close(fd)


def _counts(url: str) -> dict[str, int]:
    with quick.open(url) as db:
        return quick.queue_counts(db, QUEUE)


def _unfinished(url: str) -> int:
    counts = _counts(url)
    return counts["ready"] + counts["scheduled"] + counts["leased"]


@pytest.mark.parametrize("topic", ["sleep", "sleep_async"])
def test_worker_resumed_after_its_leases_expired_starts_none_of_its_stale_claims(
    tmp_path: Path, topic: str
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    out = tmp_path / "out.txt"
    with quick.open(url) as db:
        # Short jobs first: the worker learns a short handler time and leases a large
        # batch at once, with the slow jobs behind them.
        quick.enqueue_many(
            db, [{"queue_id": QUEUE, "topic": topic, "payload": 0.001} for _ in range(FAST)]
        )
        time.sleep(0.005)
        slow = set(
            quick.enqueue_many(
                db,
                [{"queue_id": QUEUE, "topic": topic, "payload": SLOW_SECONDS} for _ in range(SLOW)],
            )
        )
    app = "tests.acceptance.pause_app:app"
    lease = ("--lease-seconds", str(LEASE_SECONDS))
    paused = start_worker(url, out, app, "--concurrency", "4", "--batch-size", "500", *lease)
    rescuer = None
    try:
        wait_until(
            lambda: any(job_id in slow for _, job_id, _, _ in record_lines(out)),
            60,
            "the first slow job to start",
            poll=0.005,
        )
        _pause_outside_commit(paused.pid, tmp_path / "q.db.lock")
        # The paused worker holds claims it has not started (most of the slow jobs).
        held = _counts(url)["leased"]
        assert held >= SLOW // 10, f"the paused worker held only {held} claims"
        # Past every lease it holds, another worker takes the jobs over and completes
        # them all while it stays stopped.
        rescuer = start_worker(url, out, app, "--concurrency", "32", *lease)
        wait_until(lambda: _unfinished(url) == 0, 120, "the other worker to finish every job")
        resumed = time.time()
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
    completed_elsewhere = {
        job_id for event, job_id, pid, _ in records if event == "end" and int(pid) == rescuer.pid
    }
    assert len(completed_elsewhere & slow) >= SLOW // 10
    # By the handlers' own clock: a handler the pause caught between its start and its
    # record still records a time before the resume.
    restarted = [
        job_id
        for event, job_id, pid, at in records
        if event == "start"
        and int(pid) == paused.pid
        and float(at) >= resumed
        and job_id in completed_elsewhere
    ]
    assert restarted == [], f"the resumed worker started {len(restarted)} jobs it no longer held"
