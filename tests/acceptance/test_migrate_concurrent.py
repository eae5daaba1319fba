"""Two ``quick migrate`` processes moving one store to another at the same moment: each
queue moves under one of them, no job is lost or runs twice, and the reports add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import quick
from keyspace.layout import MIGRATING, MIGRATION_LEASES, QUEUES
from tests.acceptance.processes import ROOT, record_lines, start_worker, stop_worker, wait_until

APP = "tests.acceptance.migrate_app:app"
QUEUE_NAMES = [f"tenant-{n:02d}" for n in range(40)]
JOBS_PER_QUEUE = 100


def _migrate(source: str, dest: str) -> subprocess.Popen[bytes]:
    argv = ["migrate", "--to", dest, "--batch-size", "25", "--timeout", "120", "--json"]
    return subprocess.Popen(
        [sys.executable, "-m", "quick", "--db", source, *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _pending(url: str) -> int:
    """Jobs not yet finished on the store (a handler's record is written before then)."""
    with quick.open(url) as db:
        counts = [quick.queue_counts(db, queue) for queue in QUEUE_NAMES]
    return sum(c["ready"] + c["scheduled"] + c["leased"] for c in counts)


def _round(tmp_path: Path, number: int) -> None:
    source = f"sqlite:///{tmp_path / f'source-{number}.db'}"
    dest = f"sqlite:///{tmp_path / f'dest-{number}.db'}"
    out = tmp_path / f"ran-{number}.txt"
    with quick.open(source) as db:
        specs = [
            {"queue_id": queue, "topic": "record", "payload": {"p": n}, "priority": n % 7}
            for queue in QUEUE_NAMES
            for n in range(JOBS_PER_QUEUE)
        ]
        all_ids = set(quick.enqueue_many(db, specs))
    worker = start_worker(dest, out, APP, "--concurrency", "8")
    try:
        # Slow commits on the source widen the window in which the two passes overlap.
        slow = f"{source}?latency=commit:2"
        both = [_migrate(slow, dest), _migrate(slow, dest)]
        results = [process.communicate(timeout=180) for process in both]
        for process, (_, stderr) in zip(both, results, strict=True):
            assert process.returncode == 0, stderr.decode()
        reports = [json.loads(stdout) for stdout, _ in results]
        wait_until(lambda: _pending(dest) == 0, 120, "the destination to drain")
    finally:
        stop_worker(worker)

    assert sum(report["jobs"] for report in reports) == len(all_ids), reports
    ran = [job_id for job_id, *_ in record_lines(out)]
    assert len(ran) == len(set(ran)), f"round {number}: a job ran twice"
    assert set(ran) == all_ids, f"round {number}: {len(all_ids - set(ran))} job(s) lost"
    with quick.open(source) as db:
        assert db.transact(lambda tr: tr.get_range(*QUEUES.range(), limit=1)) == []
        assert db.transact(lambda tr: tr.get_range(*MIGRATION_LEASES.range())) == []
    with quick.open(dest) as db:
        assert db.transact(lambda tr: tr.get_range(*MIGRATING.range())) == []
        assert db.transact(lambda tr: tr.get_range(*MIGRATION_LEASES.range())) == []


@pytest.mark.slow
def test_two_migrations_at_once_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    for number in range(3):
        _round(tmp_path, number)
