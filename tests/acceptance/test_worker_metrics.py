"""``quick worker --metrics-port``: real processes serve Prometheus text; JSON log lines."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import quick
from tests.acceptance.processes import ROOT, start_worker, stop_worker, worker_argv

pytestmark = pytest.mark.slow

JOBS = 40


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> int:
    """A port P on the loopback with P..P+count-1 all free (just now)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count <= 65536 and all(_free(base + i) for i in range(1, count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def _jobs_total(port: int, deadline: float) -> dict[tuple[str, str], float]:
    """``quick_jobs_total`` by (topic, outcome), scraped over HTTP (retried until it answers)."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert "quick_jobs_total" in text
    return {
        (s.labels["topic"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "quick_jobs_total"
    }


@pytest.mark.parametrize("processes", [1, 2])
def test_worker_serves_metrics_per_process_and_logs_json(tmp_path: Path, processes: int) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        quick.enqueue_many(
            db,
            [
                {"queue_id": f"t{i % 3}", "topic": "record", "payload": {"n": i}}
                for i in range(JOBS)
            ],
        )
        quick.enqueue(db, "t0", "unknown", None)
    port = _free_ports(processes)
    worker = start_worker(
        url,
        tmp_path / "out.txt",
        "tests.acceptance.jobs_app:app",
        "--processes",
        str(processes),
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--log-format",
        "json",
        log_level="info",
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            scraped = [_jobs_total(port + i, deadline) for i in range(processes)]
            completed = sum(s.get(("record", "completed"), 0) for s in scraped)
            dead = sum(s.get(("unknown", "dead_lettered"), 0) for s in scraped)
            if (completed, dead) == (JOBS, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        err = stop_worker(worker)
    assert worker.returncode == 0, err.decode()
    assert (completed, dead) == (JOBS, 1)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    jobs = [line for line in lines if line["message"].startswith("job ")]
    assert sorted(line["outcome"] for line in jobs) == ["completed"] * JOBS + ["dead_lettered"]
    for line in jobs:
        assert {"queue", "topic", "job_id", "attempt", "duration", "time", "level"} <= set(line)
        assert line["logger"] == "quick.consumer"
        assert line["queue"] in {"t0", "t1", "t2"}
    assert len(lines) == len(err.decode().splitlines()), "every stderr line is a JSON object"
    stops = [line for line in lines if line["message"].startswith("stopped: ")]
    assert [line["logger"] for line in stops] == ["quick.worker"] * processes
    served = [line["message"] for line in lines if line["message"].startswith("metrics at")]
    assert sorted(served) == [
        f"metrics at http://127.0.0.1:{port + i}/metrics" for i in range(processes)
    ]


def test_worker_metrics_port_taken_or_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    base = worker_argv(url, "tests.acceptance.jobs_app:app", "--metrics-host", "127.0.0.1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*base, "--metrics-port", str(port)], cwd=ROOT, capture_output=True, timeout=60
        )
    assert done.returncode == 2, done.stderr
    assert f"--metrics-port {port}: cannot serve on 127.0.0.1" in done.stderr.decode()
    assert b"Traceback" not in done.stderr
    done = subprocess.run(
        [*base, "--metrics-port", "65535", "--processes", "2"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert b"PORT+1 is past 65535" in done.stderr
