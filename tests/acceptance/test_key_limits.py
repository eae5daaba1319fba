"""Keyed limits hold across real worker processes and queues: at most ``max_running`` of
the jobs naming a key run at once (from the handlers' own start and end times), however
many queues they are spread over; ``max_per_second`` paces their starts; and a killed
worker's slots come back when its leases expire."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

import quick
from quick.key_limits import key_running
from tests.acceptance.processes import record_lines, start_worker, wait_until
from tests.acceptance.test_queue_limits import _finished, _most_at_once, url, workers

APP = "tests.acceptance.limits_app:app"
KEY = "shared-api"

pytestmark = pytest.mark.slow
__all__ = ["url", "workers"]  # the fixtures, shared with the per-queue limit tests


def _spread(db: quick.Database, jobs: int, payload: Any, topic: str = "timed") -> None:
    """``jobs`` jobs naming :data:`KEY`, spread over 20 queues."""
    quick.enqueue_many(
        db,
        [
            {
                "queue_id": f"tenant-{i % 20}",
                "topic": topic,
                "payload": payload,
                "limit_keys": [KEY],
            }
            for i in range(jobs)
        ],
    )


def _three_workers(url: str, out: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    workers += [start_worker(url, out, APP, "--concurrency", "8") for _ in range(3)]


def test_key_limits_max_running_holds_across_three_workers_and_twenty_queues(
    url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "runs.txt"
    with quick.open(url) as db:
        quick.set_key_limits(db, KEY, max_running=2)
        _spread(db, 40, 0.05)
    _three_workers(url, out, workers)
    wait_until(lambda: len(_finished(out)) == 40, 90, "40 keyed jobs")
    assert _most_at_once(_finished(out)) == 2
    with quick.open(url) as db:
        assert key_running(db, KEY) == 0


def test_key_limits_max_per_second_paces_200_jobs_over_9_to_12_seconds(
    url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "runs.txt"
    with quick.open(url) as db:
        quick.set_key_limits(db, KEY, max_per_second=20)
        _spread(db, 200, 30, topic="claimed")  # 30: the workers' lease, in seconds
    workers += [
        start_worker(url, out, APP, "--concurrency", "8", "--lease-seconds", "30") for _ in range(3)
    ]
    wait_until(lambda: len(_finished(out)) == 200, 60, "200 rate-limited jobs")
    spans = _finished(out)
    claims = sorted(claimed for claimed, _ in spans)
    took = max(end for _, end in spans) - claims[0]
    assert 9.0 <= took <= 12.0
    # The token bucket's own bound on claims: a burst of 5, then 20 a second.
    assert max(sum(1 for c in claims if t <= c < t + 1) for t in claims) <= 20 + 5


def test_key_limits_killed_workers_slots_come_back_when_its_leases_expire(
    url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "runs.txt"
    with quick.open(url) as db:
        quick.set_key_limits(db, KEY, max_running=2)
        _spread(db, 2, None, topic="stuck")
        _spread(db, 6, 0)
    doomed = start_worker(url, out, APP, "--concurrency", "8", "--lease-seconds", "1")
    workers.append(doomed)
    started = lambda: {r[0] for r in record_lines(out) if float(r[2]) < 0}  # noqa: E731
    wait_until(lambda: len(started()) == 2, 30, "the stuck jobs to start")
    with quick.open(url) as db:
        assert key_running(db, KEY) == 2  # the key is full: nothing else may start
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    workers.append(start_worker(url, out, APP, "--concurrency", "8", "--lease-seconds", "1"))
    wait_until(lambda: len(_finished(out)) == 8, 30, "every job, the stuck ones retried")
    with quick.open(url) as db:
        assert key_running(db, KEY) == 0
