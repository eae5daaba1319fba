"""Exit codes that tell the truth: the worker supervisor restarts a killed
child and says so, an unfinished demo is a failure, and ``dlq purge`` purges everything."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

import quick
from keyspace.codec import pack_value
from keyspace.layout import DEAD_LETTERS
from keyspace.protocol import Transaction
from quick.cli import cli
from quick.cli.supervisor import FIRST_WAIT, MAX_WAIT, describe_exit, restart_wait
from tests.acceptance.processes import record_lines, start_worker, stop_worker, wait_until


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def test_supervisor_restart_wait_doubles_to_a_cap_and_resets_after_a_healthy_life() -> None:
    assert restart_wait(None, 0.1) == FIRST_WAIT
    assert restart_wait(FIRST_WAIT, 0.1) == 2 * FIRST_WAIT
    assert restart_wait(MAX_WAIT, 5.0) == MAX_WAIT
    assert restart_wait(16.0, 5.0) == MAX_WAIT
    assert restart_wait(16.0, 61.0) == FIRST_WAIT
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit status 3"


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_cli_worker_supervisor_restarts_a_killed_child_and_logs_it(
    url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    supervisor = start_worker(url, out, "tests.acceptance.jobs_app:app", "--processes", "2")
    try:
        wait_until(lambda: len(_children(supervisor.pid)) == 2, 30, "two children")
        first = _children(supervisor.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = _children(supervisor.pid)
            return len(now) == 2 and victim not in now

        wait_until(replaced, 30, "the killed child to be replaced")
        with quick.open(url) as db:
            quick.enqueue_many(
                db,
                [
                    {"queue_id": f"q{i % 3}", "topic": "record", "payload": {"n": i}}
                    for i in range(60)
                ],
            )
        wait_until(lambda: len(record_lines(out)) >= 60, 60, "60 jobs to run", 0.05)
        err = stop_worker(supervisor)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    log = err.decode()
    assert supervisor.returncode == 0, log
    assert "Traceback" not in log
    assert f"worker process {sorted(first).index(victim)} died" in log
    assert 'ending="killed by SIGKILL"' in log
    assert "restarted" in log
    assert {int(f[0]) for f in record_lines(out)} == set(range(60))


def test_cli_demo_json_exits_non_zero_when_it_did_not_finish(url: str) -> None:
    result = CliRunner().invoke(
        cli, ["--db", url, "demo", "--jobs", "300", "--tenants", "3", "--timeout", "0.01", "--json"]
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["finished"] is False
    assert "did not finish within --timeout" in result.stderr


def test_cli_dlq_purge_deletes_past_one_thousand(url: str) -> None:
    letter = pack_value({"jr": None, "e": "boom", "at": 1})

    def bury(tr: Transaction) -> None:
        for n in range(2100):
            tr.set(DEAD_LETTERS.pack((f"q{n % 2}", f"job-{n:05d}")), letter)

    with quick.open(url) as db:
        db.transact(bury)
    result = CliRunner().invoke(cli, ["--db", url, "dlq", "purge"])
    assert (result.exit_code, result.output) == (0, "purged 2100\n")
    with quick.open(url) as db:
        assert quick.list_dead(db) == []
