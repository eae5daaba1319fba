"""Workflow runs across real worker processes, one SIGKILLed mid-run: every run succeeds once.

Four ``quick worker`` processes share one sqlite file and run many concurrent runs of
a 10-step DAG (tests/acceptance/dag_app.py). One worker is killed with SIGKILL
while holding leases; its steps come back when their leases expire. Every run must
succeed, the journal must show each step succeeding exactly once per run, and the
last step's output must show every dependency's result arrived. A handler may run a
second time only for an item the killed worker held.

Scale: 1,000 runs (10,000 steps) on the sqlite engine; 50 runs on the fault-injecting engine.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

import quick
from keyspace.protocol import Transaction
from tests.acceptance.dag_app import FINAL, FLOW
from tests.acceptance.processes import (
    kill_worker,
    record_lines,
    start_crashable_worker,
    wait_until,
)
from workflow import inspect_run, list_runs, start_run
from workflow import journal as events

pytestmark = pytest.mark.slow

QUEUES = [f"tenant-{i}" for i in range(20)]
STEPS = [spec.key for spec in FLOW.steps]


def _finished(url: str, runs: int) -> int:
    with quick.open(url) as db:
        return sum(
            len(list_runs(db, workflow=FLOW.name, status=status, limit=runs + 1))
            for status in ("succeeded", "failed", "cancelled")
        )


@pytest.mark.parametrize(
    ("runs", "faults"),
    [(1000, ""), (50, "?faults=not_committed:0.05,commit_unknown_result:0.05&seed=7")],
    ids=["sqlite", "faulty-sqlite"],
)
def test_workflow_runs_survive_a_killed_worker(tmp_path: Path, runs: int, faults: str) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}{faults}"
    out = tmp_path / "out.txt"
    with quick.open(url) as db:

        def start_batch(tr: Transaction, first: int, last: int) -> list[str]:
            return [
                start_run(tr, FLOW, i, queue_id=QUEUES[i % 20], idempotency_key=f"run-{i}")
                for i in range(first, last)
            ]

        run_ids = []
        for first in range(0, runs, 100):
            run_ids += db.transact(start_batch, first, min(runs, first + 100))
    assert len(set(run_ids)) == runs

    workers = [start_crashable_worker(url, out, "tests.acceptance.dag_app:app") for _ in range(4)]
    try:
        third = runs * len(STEPS) // 3
        wait_until(lambda: len(record_lines(out)) >= third, 120, "a third of the steps", 0.25)
        killed = workers[0]
        kill_worker(killed)
        wait_until(lambda: _finished(url, runs) == runs, 480, "every run to finish", 0.25)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
    for worker in workers[1:]:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()

    with quick.open(url) as db:
        views = [inspect_run(db, run_id) for run_id in run_ids]
        leftover = sum(
            count
            for queue in QUEUES
            for state, count in quick.queue_counts(db, queue).items()
            if state != "dead"
        )
    assert {view.status for view in views} == {"succeeded"}
    for view in views:
        succeeded = Counter(e.step for e in view.journal if e.kind == events.STEP_SUCCEEDED)
        assert succeeded == dict.fromkeys(STEPS, 1), view.run_id
        assert [e.kind for e in view.journal].count(events.RUN_SUCCEEDED) == 1
        assert view.steps["s10"].output == FINAL, view.run_id
    assert leftover == 0

    # Every step's handler ran; twice only where the killed worker ran it first.
    ran: dict[tuple[str, str], list[str]] = {}
    for run_id, step, pid in record_lines(out):
        ran.setdefault((run_id, step), []).append(pid)
    assert set(ran) == {(run_id, step) for run_id in run_ids for step in STEPS}
    for (run_id, step), pids in ran.items():
        if len(pids) > 1:
            assert pids[0] == str(killed.pid), f"{run_id} {step} ran twice: {pids}"
