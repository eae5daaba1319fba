"""Per-queue limits hold across real worker processes: at most ``max_running`` of a
queue's jobs run at once (from the handlers' own start and end times), ``max_per_second``
paces starts, and a killed worker's slots come back when its leases expire."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quick
from tests.acceptance.processes import record_lines, start_worker, wait_until

APP = "tests.acceptance.limits_app:app"

pytestmark = pytest.mark.slow


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'limits.db'}"


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for worker in started:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in started:
        try:
            worker.communicate(timeout=15)  # reads and closes its stderr pipe
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()


def _finished(out: Path) -> list[tuple[float, float]]:
    return [(float(r[1]), float(r[2])) for r in record_lines(out) if float(r[2]) >= 0]


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def _run_limited(
    url: str,
    out: Path,
    workers: list[subprocess.Popen[bytes]],
    jobs: int,
    seconds: float,
    topic: str = "timed",
    **limits: Any,
) -> list[tuple[float, float]]:
    """Run ``jobs`` jobs of ``topic`` (``seconds``: their payload) on one limited queue
    with three workers (30-second leases); their spans."""
    with quick.open(url) as db:
        quick.set_queue_limits(db, "limited", **limits)
        quick.enqueue_many(db, [{"queue_id": "limited", "topic": topic, "payload": seconds}] * jobs)
    workers += [
        start_worker(url, out, APP, "--concurrency", "8", "--lease-seconds", "30") for _ in range(3)
    ]
    wait_until(lambda: len(_finished(out)) == jobs, 60, f"{jobs} limited jobs")
    return _finished(out)


def test_queue_limits_max_running_holds_across_three_workers(
    url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    spans = _run_limited(url, tmp_path / "runs.txt", workers, 24, 0.1, max_running=2)
    assert _most_at_once(spans) == 2


def test_queue_limits_max_per_second_paces_claims(
    url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    # Claim times (from each job's lease deadline, 30 s leases), which the bucket paces;
    # handler starts can bunch on a loaded machine.
    spans = _run_limited(
        url, tmp_path / "runs.txt", workers, 100, 30, topic="claimed", max_per_second=20
    )
    claims = sorted(claimed for claimed, _ in spans)
    assert 4.0 <= claims[-1] - claims[0] <= 8.0
    assert max(sum(1 for c in claims if t <= c < t + 1) for t in claims) <= 20 + 5  # + burst


def test_queue_limits_killed_workers_slots_come_back_when_its_leases_expire(
    url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "runs.txt"
    with quick.open(url) as db:
        quick.set_queue_limits(db, "capped", max_running=2)
        stuck = [quick.enqueue(db, "capped", "stuck", None) for _ in range(2)]
        quick.enqueue_many(db, [{"queue_id": "capped", "topic": "timed", "payload": 0}] * 4)
    doomed = start_worker(url, out, APP, "--concurrency", "8", "--lease-seconds", "1")
    workers.append(doomed)
    started = lambda: {r[0] for r in record_lines(out)}  # noqa: E731
    wait_until(lambda: started() >= set(stuck), 30, "the stuck jobs to start")
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    workers.append(start_worker(url, out, APP, "--concurrency", "8", "--lease-seconds", "1"))
    wait_until(lambda: len(_finished(out)) == 6, 30, "every job, the stuck ones retried")
    with quick.open(url) as db:
        assert quick.queue_counts(db, "capped")["leased"] == 0
