"""``quick check --deep`` on a big store: each queue is checked as soon as the walk has
read it (problems stream out before the walk ends), and the walk reports its progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import quick
from keyspace.layout import queue_keys
from keyspace.protocol import Transaction
from quick.checking import PAGE, Problem, check_deep
from quick.cli import cli
from quick.cli import inspect as inspect_commands

#: Jobs in the queue after the broken one: their keys take more than a page of the walk.
LATER_JOBS = PAGE


def _store(path: Path) -> str:
    """Queue ``a`` with a counter that is off, then queue ``b`` with ``LATER_JOBS`` jobs."""
    url = f"sqlite:///{path}"
    with quick.open(url) as db:
        quick.enqueue(db, "a", "t", 0)
        for _ in range(LATER_JOBS // 500):
            quick.enqueue_many(
                db, [{"queue_id": "b", "topic": "t", "payload": i} for i in range(500)]
            )

        def off(tr: Transaction) -> None:
            tr.set(queue_keys("a").counter("leased"), (9).to_bytes(8, "little"))

        db.transact(off)
    return url


def test_check_deep_reports_a_queue_before_the_walk_ends(tmp_path: Path) -> None:
    url = _store(tmp_path / "q.db")
    events: list[tuple[str, int]] = []
    keys_read = 0

    def progress(keys: int, at: bytes) -> None:
        nonlocal keys_read
        keys_read = keys
        events.append(("progress", keys))

    def found(problem: Problem) -> None:
        events.append((problem.kind, keys_read))

    with quick.open(url) as db:
        report = check_deep(db, progress=progress, found=found)
    assert [p.kind for p in report.problems] == ["counter off"]
    (seen_at,) = [keys for kind, keys in events if kind == "counter off"]
    assert seen_at < report.keys  # reported while queue b's keys were still being walked
    assert events[-1] == ("progress", report.keys)
    assert [keys for kind, keys in events if kind == "progress"] == sorted(
        keys for kind, keys in events if kind == "progress"
    )


def test_cli_check_deep_streams_problems_and_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store(tmp_path / "q.db")
    monkeypatch.setattr(inspect_commands, "PROGRESS_EVERY", 0.0)
    result = CliRunner().invoke(cli, ["--db", url, "check", "--deep"])
    assert result.exit_code == 1, result.output
    assert "counter off: queue counter  queue='a'  state='leased'" in result.stdout
    assert result.stdout.count("counter off") == 1  # printed as found, not again at the end
    assert "keys checked, 1 problems, 1 left" in result.stdout
    assert "checked 1,000 keys (" in result.stderr
