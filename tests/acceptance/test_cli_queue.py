"""The queue from the command line: enqueue, queues, dlq, cron, and real worker processes."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import quick
from quick.cli import cli
from tests.acceptance.processes import start_worker


def _run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    return result.exit_code, result.output


def test_cli_enqueue_queues_and_bad_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    code, out = _run(url, "enqueue", "tenant-1", "email:send", "--payload", '{"to": "a"}')
    assert code == 0
    job_id = out.strip()
    with quick.open(url) as db:
        job = quick.get_job(db, job_id)
    assert job is not None
    assert job.payload == {"to": "a"}
    code, out = _run(url, "queues", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["queue"], row["counts"]["ready"]) == ("tenant-1", 1)
    code, out = _run(url, "enqueue", "tenant-1", "t", "--payload", "{nope")
    assert code == 2
    assert "--payload is not valid JSON" in out
    assert "Traceback" not in out
    code, out = _run(url, "enqueue", "", "t")
    assert code == 2
    assert "queue_id" in out


def test_cli_dlq_and_cron(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        job = quick.enqueue(db, "q", "t", {"x": 1}, max_attempts=1)
        (claim,) = quick.claim(db, "q", "w")
        quick.fail(db, claim, "boom")
    code, out = _run(url, "dlq", "list", "--json")
    assert code == 0
    assert json.loads(out)[0]["error"] == "boom"
    assert _run(url, "dlq", "requeue", "q", job) == (0, f"{job}\n")
    code, out = _run(url, "dlq", "requeue", "q", "missing")
    assert code == 4
    code, out = _run(
        url, "cron", "add", "nightly", "0 3 * * *", "q", "report", "--tz", "Europe/Paris"
    )
    assert code == 0
    code, out = _run(url, "cron", "add", "bad", "61 * * * *", "q", "report")
    assert code == 2
    assert "cron_expr" in out
    code, out = _run(url, "cron", "list")
    assert "nightly" in out
    assert _run(url, "cron", "remove", "nightly")[0] == 0
    assert _run(url, "cron", "remove", "nightly")[0] == 4


def _wait_lines(path: Path, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"only {len(lines)} of {count} jobs ran")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_cli_worker_drains_and_stops_cleanly_on_sigterm(tmp_path: Path, processes: int) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    out = tmp_path / "out.txt"
    with quick.open(url) as db:
        quick.enqueue_many(
            db,
            [{"queue_id": f"t{i % 7}", "topic": "record", "payload": {"n": i}} for i in range(300)],
        )
    worker = start_worker(
        url,
        out,
        "tests.acceptance.jobs_app:app",
        "--processes",
        str(processes),
        "--concurrency",
        "4",
    )
    lines = _wait_lines(out, 300)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()
    assert sorted(int(line.split()[0]) for line in lines) == list(range(300))
    if processes == 2:
        assert len({line.split()[1] for line in lines}) == 2, "both processes took work"


def test_cli_demo_drains_its_workload_and_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    code, out = _run(url, "demo", "--jobs", "150", "--tenants", "10", "--json")
    assert code == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["finished"] is True
    assert report["enqueued"] == 151
    assert report["outcomes"]["completed"] == 150
    assert report["outcomes"]["dead_lettered"] == 1
    assert report["outcomes"]["requeued"] >= 1
    assert len(report["dead_letters"]) == 1


def test_cli_jobs_lists_a_queue_and_names_an_unknown_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        later = quick.enqueue(db, "q", "t", 1, delay=60)
        first = quick.enqueue(db, "q", "t", 2, priority=1)
    code, out = _run(url, "jobs", "q", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["job_id"], r["state"]) for r in rows] == [(first, "ready"), (later, "scheduled")]
    code, out = _run(url, "jobs", "nobody")
    assert code == 4
    assert "no waiting or running jobs" in out
