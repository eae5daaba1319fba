"""``quick migrate`` between real files while real workers run on both sides, with the
migrating process killed mid-way and rerun; and the command's errors."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import quick
from keyspace.layout import MIGRATING, QUEUES
from tests.acceptance.processes import ROOT, record_lines, start_worker, stop_worker, wait_until

QUEUES_MOVED = ["tenant-a", "tenant-b", "tenant-c"]
APP = "tests.acceptance.migrate_app:app"


def _quick(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "quick", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _pending(url: str) -> int:
    with quick.open(url) as db:
        counts = [quick.queue_counts(db, q) for q in QUEUES_MOVED]
    return sum(c["ready"] + c["scheduled"] + c["leased"] for c in counts)


@pytest.mark.slow
def test_migrate_killed_and_rerun_while_workers_run_on_both_sides(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    out = tmp_path / "out.txt"
    rng = random.Random(7)
    with quick.open(source) as db:
        specs = [
            {"queue_id": q, "topic": "record", "payload": {"p": p}, "priority": p}
            for q in QUEUES_MOVED
            for p in (rng.randrange(50) for _ in range(600))
        ]
        specs += [
            {"queue_id": q, "topic": "record", "payload": {"p": "later"}, "delay": 2}
            for q in QUEUES_MOVED
            for _ in range(10)
        ]
        all_ids = set(quick.enqueue_many(db, specs))
    workers = [
        start_worker(url, out, APP, "--concurrency", "1", "--lease-seconds", "5")
        for url in (source, dest)
    ]
    try:
        # Slow commits on the migrating process's source handle, so it is killed mid-way.
        slow = f"{source}?latency=commit:15"
        first = _quick("--db", slow, "migrate", "--to", dest, "--batch-size", "20")
        wait_until(lambda: _pending(dest) + len(record_lines(out)) >= 200, 60, "a partial move")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        assert first.returncode == -signal.SIGKILL, "the first migration finished before the kill"
        rerun = _quick("migrate", "--db", source, "--to", dest, "--timeout", "60")
        stdout, stderr = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, stderr.decode()
        assert b"moved 3 queue(s)" in stdout
        wait_until(lambda: len(record_lines(out)) >= len(all_ids), 120, "every job to run")
    finally:
        for worker in workers:
            stop_worker(worker)

    records = record_lines(out)
    ran = [job_id for job_id, *_ in records]
    assert len(ran) == len(set(ran)), "a job ran twice"
    assert set(ran) == all_ids, "a job was lost"
    pids = {pid for *_, pid in records}
    assert len(pids) == 2, "both sides ran jobs"
    for pid in pids:
        for queue in QUEUES_MOVED:
            order = [int(p) for _, q, p, w in records if w == pid and q == queue and p != "later"]
            assert order == sorted(order), f"{queue} on worker {pid} ran out of priority order"
    with quick.open(source) as db:
        left = db.transact(lambda tr: tr.get_range(*QUEUES.range(), limit=10))
    assert left == [], "the source still holds keys of the moved queues"
    with quick.open(dest) as db:
        assert db.transact(lambda tr: tr.get_range(*MIGRATING.range())) == []
    with quick.open(source) as db, pytest.raises(quick.QueueMoved) as moved:
        quick.enqueue(db, "tenant-a", "record", {"p": 0})
    assert str(tmp_path / "dest.db") in moved.value.destination


@pytest.mark.parametrize(
    ("destination", "exit_code"),
    [("sqlite:///{tmp}/missing-dir/dest.db", 3), ("sqlite:///{tmp}/dest.db?nope=1", 2)],
)
def test_migrate_command_with_a_bad_destination_changes_nothing(
    tmp_path: Path, destination: str, exit_code: int
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with quick.open(source) as db:
        job_id = quick.enqueue(db, "t1", "record", {"p": 1})
        before = db.transact(lambda tr: tr.get_range(b"", b"\xff"))
    command = _quick("--db", source, "migrate", "--to", destination.format(tmp=tmp_path))
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == exit_code
    assert stderr.startswith(b"Error: ")
    assert b"Traceback" not in stderr
    with quick.open(source) as db:
        assert db.transact(lambda tr: tr.get_range(b"", b"\xff")) == before
        assert quick.enqueue(db, "t1", "record", {"p": 2}) != job_id
