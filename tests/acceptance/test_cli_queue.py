"""The queue from the command line: enqueue, queues, jobs, dlq, cron, and real worker processes.

Every test but the demo runs on each engine. On the fault-injecting one each command
opens the store afresh with the same seed, so each meets the same first draws: its first
writing commit is applied and then reported as ``commit_unknown_result`` (1021), and is
retried. A command must then still do its work once and report it truly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

import quick
from keyspace import layout
from quick.cli import cli
from tests.acceptance.processes import ROOT, record_lines, start_worker, stop_worker, wait_until
from tests.conftest import engine_url

#: The faulty engine's seed: its first two draws are 1021s that apply the commit first.
SEED = 79


@pytest.fixture
def url(engine: str, tmp_path: Path) -> str:
    return engine_url(engine, tmp_path, seed=SEED)


@pytest.fixture
def tag() -> str:
    """A prefix for queue and schedule names (the fdb engine shares one keyspace)."""
    return uuid.uuid4().hex[:8]


def _run(url: str, *args: str) -> tuple[int, str]:
    """``quick --db URL ARGS`` in this process."""
    result = CliRunner().invoke(cli, ["--db", url, *args])
    return result.exit_code, result.output


def _process(url: str, *args: str) -> tuple[int, str]:
    """``python -m quick ARGS`` as a real process, with the store named by ``$QUICK_DB``."""
    env = {**os.environ, "QUICK_DB": url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def _queue_rows(url: str, *queues: str) -> dict[str, dict[str, int]]:
    code, out = _process(url, "queues", "--json")
    assert code == 0, out
    return {row["queue"]: row["counts"] for row in json.loads(out) if row["queue"] in queues}


def test_cli_enqueue_queues_and_bad_json(url: str, tag: str) -> None:
    queue = f"{tag}-1"
    code, out = _run(url, "enqueue", queue, "email:send", "--payload", '{"to": "a"}')
    assert code == 0, out
    job_id = out.strip()
    with quick.open(url) as db:
        job = quick.get_job(db, job_id)
    assert job is not None
    assert job.payload == {"to": "a"}
    code, out = _run(url, "queues", "--json")
    assert code == 0, out
    (row,) = [row for row in json.loads(out) if row["queue"] == queue]
    assert row["counts"] == {"scheduled": 0, "ready": 1, "leased": 0, "dead": 0}
    code, out = _run(url, "enqueue", queue, "t", "--payload", "{nope")
    assert code == 2
    assert "--payload is not valid JSON" in out
    assert "Traceback" not in out
    code, out = _run(url, "enqueue", "", "t")
    assert code == 2
    assert "queue_id" in out


def test_cli_dlq_lists_and_requeues_dead_letters(url: str, tag: str) -> None:
    queue = f"{tag}-q"
    with quick.open(url) as db:
        job = quick.enqueue(db, queue, "t", {"x": 1}, max_attempts=1)
        (claim,) = quick.claim(db, queue, "w")
        quick.fail(db, claim, "boom")
    code, out = _run(url, "dlq", "list", "--queue", queue, "--json")
    assert code == 0, out
    assert [(row["job_id"], row["error"]) for row in json.loads(out)] == [(job, "boom")]
    assert _run(url, "dlq", "requeue", queue, job) == (0, f"{job}\n")
    code, out = _run(url, "dlq", "requeue", queue, "missing")
    assert code == 4
    assert _run(url, "dlq", "list", "--queue", queue, "--json") == (0, "[]\n")
    with quick.open(url) as db:
        assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 1, "leased": 0, "dead": 0}
        assert quick.job_state(db, job) is quick.JobState.READY


def test_cli_dlq_purge_reports_how_many_it_deleted(url: str, tag: str) -> None:
    queue = f"{tag}-q"
    with quick.open(url) as db:
        for n in range(2):
            quick.enqueue(db, queue, "t", n, max_attempts=1)
        for claim in quick.claim(db, queue, "w", limit=2):
            quick.fail(db, claim, "boom")
    code, out = _run(url, "dlq", "purge", "--queue", queue)
    assert (code, out) == (0, "purged 2\n")
    assert _run(url, "dlq", "list", "--queue", queue, "--json") == (0, "[]\n")


def test_cli_cron_adds_lists_and_removes_schedules(url: str, tag: str) -> None:
    name = f"{tag}-nightly"
    code, out = _run(url, "cron", "add", name, "0 3 * * *", "q", "report", "--tz", "Europe/Paris")
    assert code == 0, out
    code, out = _run(url, "cron", "add", f"{tag}-bad", "61 * * * *", "q", "report")
    assert code == 2
    assert "cron_expr" in out
    code, out = _run(url, "cron", "list")
    assert name in out
    assert f"{tag}-bad" not in out
    assert _run(url, "cron", "remove", name) == (0, f"removed {name}\n")
    assert _run(url, "cron", "remove", name)[0] == 4
    assert name not in _run(url, "cron", "list")[1]


def test_cli_enqueue_worker_queues_jobs_and_dlq_as_real_processes(
    url: str, engine: str, tag: str, tmp_path: Path
) -> None:
    good, poison = f"{tag}-a", f"{tag}-b"
    out = tmp_path / "out.txt"
    # Producers: two real processes, and more enqueues through the CLI in this process.
    code, first = _process(url, "enqueue", good, "record", "--payload", '{"n": 0}')
    assert code == 0, first
    code, bad = _process(url, "enqueue", poison, "nobody-handles-this", "--payload", "{}")
    assert code == 0, bad
    code, later = _run(url, "enqueue", good, "record", "--payload", '{"n": -1}', "--delay", "3600")
    assert code == 0, later
    ids = {0: first.strip()}
    for n in range(1, 8):
        code, made = _run(url, "enqueue", good, "record", "--payload", json.dumps({"n": n}))
        assert code == 0, made
        ids[n] = made.strip()
    dead_id, later_id = bad.strip(), later.strip()

    worker = start_worker(url, out, "tests.acceptance.jobs_app:app", "--concurrency", "4")
    with quick.open(url) as db:

        def drained() -> bool:
            states = {quick.job_state(db, job) for job in [*ids.values(), dead_id]}
            return states <= {quick.JobState.COMPLETED, quick.JobState.DEAD}

        wait_until(drained, 60, "the worker to drain the visible jobs", 0.05)
        assert quick.job_state(db, dead_id) is quick.JobState.DEAD
        assert {quick.job_state(db, job) for job in ids.values()} == {quick.JobState.COMPLETED}
    err = stop_worker(worker)
    assert worker.returncode == 0, err.decode()

    # Each visible job ran (once, unless a commit's result was unknown), the delayed one not.
    runs = Counter(int(fields[0]) for fields in record_lines(out))
    assert set(runs) == set(ids)
    if engine != "faulty-sqlite":
        assert set(runs.values()) == {1}

    assert _queue_rows(url, good, poison) == {
        good: {"scheduled": 1, "ready": 0, "leased": 0, "dead": 0},
        poison: {"scheduled": 0, "ready": 0, "leased": 0, "dead": 1},
    }
    code, listed = _process(url, "jobs", good, "--json")
    assert code == 0, listed
    assert [(row["job_id"], row["state"]) for row in json.loads(listed)] == [
        (later_id, "scheduled")
    ]
    code, dead = _process(url, "dlq", "list", "--queue", poison, "--json")
    assert code == 0, dead
    (row,) = json.loads(dead)
    assert (row["job_id"], row["topic"]) == (dead_id, "nobody-handles-this")
    assert "unknown topic 'nobody-handles-this'" in row["error"]
    assert _process(url, "dlq", "requeue", poison, dead_id) == (0, f"{dead_id}\n")
    assert _queue_rows(url, good, poison)[poison] == {
        "scheduled": 0,
        "ready": 1,
        "leased": 0,
        "dead": 0,
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("engine", "processes"),
    # One faulty process is the flow test above; here two race under the supervisor.
    [("sqlite", 1), ("sqlite", 2), ("faulty-sqlite", 2), ("fdb", 2)],
)
def test_cli_worker_drains_and_stops_cleanly_on_sigterm(
    url: str, engine: str, tag: str, tmp_path: Path, processes: int
) -> None:
    out = tmp_path / "out.txt"
    with quick.open(url) as db:
        ids = quick.enqueue_many(
            db,
            [
                # Each job takes 10 ms, so the work outlasts the second process's start-up
                # (a drain of no-op jobs can finish before it is up).
                {
                    "queue_id": f"{tag}-{i % 7}",
                    "topic": "record",
                    "payload": {"n": i, "sleep": 0.01},
                }
                for i in range(300)
            ],
        )
    worker = start_worker(
        url,
        out,
        "tests.acceptance.jobs_app:app",
        "--processes",
        str(processes),
        "--concurrency",
        "4",
        # Small claims, so the two processes race for the 300 jobs rather than the first
        # one up leasing most of them in a few claims of the default 100.
        "--batch-size",
        "5",
    )
    wait_until(lambda: len({f[0] for f in record_lines(out)}) >= 300, 60, "300 jobs to run", 0.05)
    err = stop_worker(worker)
    assert worker.returncode == 0, err.decode()
    lines = record_lines(out)
    runs = Counter(int(fields[0]) for fields in lines)
    assert set(runs) == set(range(300))
    if engine != "faulty-sqlite":
        assert set(runs.values()) == {1}, "a job ran twice without an unknown commit result"
    with quick.open(url) as db:
        assert {quick.job_state(db, job) for job in ids} == {quick.JobState.COMPLETED}
    if processes == 2:
        assert len({fields[1] for fields in lines}) == 2, "both processes took work"


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


def test_cli_jobs_lists_a_queue_and_names_an_unknown_one(url: str, tag: str) -> None:
    queue = f"{tag}-q"
    with quick.open(url) as db:
        later = quick.enqueue(db, queue, "t", 1, delay=60)
        first = quick.enqueue(db, queue, "t", 2, priority=1)
    code, out = _run(url, "jobs", queue, "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert [(r["job_id"], r["state"]) for r in rows] == [(first, "ready"), (later, "scheduled")]
    code, out = _run(url, "jobs", f"{tag}-nobody")
    assert code == 4
    assert "no waiting or running jobs" in out


@pytest.mark.slow
def test_cli_worker_keep_finished_0_leaves_no_per_job_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    out = tmp_path / "out.txt"
    with quick.open(url) as db:
        specs = [
            {"queue_id": f"t{i % 3}", "topic": "record", "payload": {"n": i}} for i in range(60)
        ]
        ids = quick.enqueue_many(db, specs)
    worker = start_worker(url, out, "tests.acceptance.jobs_app:app", "--keep-finished", "0")

    def per_job_keys() -> list[str]:
        # job records, index entries, directory tombstones and finished-by-time entries
        with quick.open(url) as db:
            keys = db.transact(
                lambda tr: [k for k, _ in tr.snapshot.get_range(*layout.ROOT.range())]
            )
        shown = [layout.describe(key) for key in keys]
        return [line for line in shown if line.split("  ")[0] in PER_JOB]

    try:
        wait_until(lambda: len(record_lines(out)) >= 60, 60, "60 jobs to run", 0.05)
        wait_until(lambda: not per_job_keys(), 30, "the purge chore to forget every job", 0.2)
    finally:
        err = stop_worker(worker)
    assert worker.returncode == 0, err.decode()
    assert per_job_keys() == []
    with quick.open(url) as db:
        # The tombstones are gone, so a finished job's id is unknown now.
        assert {quick.job_state(db, job) for job in ids} == {None}


PER_JOB = {"job", "ready job", "scheduled or leased job", "job directory", "finished job"}
