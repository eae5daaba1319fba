"""Real worker processes killed mid-run: no job is lost, effects in the store are exactly once."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import quick
from tests.acceptance.processes import (
    kill_worker,
    record_lines,
    start_crashable_worker,
    stop_worker,
    wait_until,
)

QUEUES = [f"tenant-{i}" for i in range(20)]

pytestmark = pytest.mark.slow


def _remaining(url: str) -> int:
    with quick.open(url) as db:
        counts = [quick.queue_counts(db, q) for q in QUEUES]
    return sum(c["ready"] + c["scheduled"] + c["leased"] for c in counts)


@pytest.mark.parametrize(
    "faults", ["", "?faults=not_committed:0.05,commit_unknown_result:0.05&seed=11"]
)
def test_workers_killed_and_stopped_mid_run_lose_nothing(tmp_path: Path, faults: str) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}{faults}"
    out = tmp_path / "out.txt"
    with quick.open(url) as db:
        for start in range(0, 5_000, 500):
            quick.enqueue_many(
                db,
                [
                    {
                        "queue_id": QUEUES[i % 20],
                        "topic": "work" if i % 2 else "ledger",
                        "payload": i,
                    }
                    for i in range(start, start + 500)
                ],
            )
        work_ids = {
            job.id
            for q in QUEUES
            for job in quick.list_jobs(db, q, limit=1000)
            if job.topic == "work"
        }
        ledger_ids = {
            job.id
            for q in QUEUES
            for job in quick.list_jobs(db, q, limit=1000)
            if job.topic == "ledger"
        }
    assert len(work_ids) == len(ledger_ids) == 2_500
    workers = [start_crashable_worker(url, out, "tests.acceptance.crash_app:app") for _ in range(4)]
    wait_until(lambda: len(record_lines(out)) >= 400, 120, "400 jobs")
    killed = workers[0]
    kill_worker(killed)
    wait_until(lambda: len(record_lines(out)) >= 1_200, 120, "1,200 jobs")
    stopped = workers[1]
    err = stop_worker(stopped)
    assert stopped.returncode == 0, err.decode()
    wait_until(lambda: _remaining(url) == 0, 180, "every job to finish")
    for worker in workers[2:]:
        err = stop_worker(worker)
        assert worker.returncode == 0, err.decode()

    records = record_lines(out)
    seen: dict[str, list[str]] = {}
    for job_id, pid in records:
        seen.setdefault(job_id, []).append(pid)
    assert set(seen) == work_ids, "every work job ran"
    duplicated = {job_id: pids for job_id, pids in seen.items() if len(pids) > 1}
    for job_id, pids in duplicated.items():
        assert pids[0] == str(killed.pid), f"{job_id} ran twice without a crash: {pids}"
    with quick.open(url) as db:
        effects = dict(db.transact(lambda tr: tr.get_range_startswith(b"effects/")))
        states = {quick.job_state(db, job_id) for job_id in work_ids | ledger_ids}
    assert {key.decode()[8:] for key in effects} == ledger_ids
    assert {struct.unpack("<q", value)[0] for value in effects.values()} == {1}
    assert states == {quick.JobState.COMPLETED}
