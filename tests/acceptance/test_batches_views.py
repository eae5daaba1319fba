"""Batch status from the CLI (``quick batches list/show/close``): counts by outcome,
members, unknown ids. The dashboard's pages are ``test_dashboard_batches.py``'s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import quick
from quick.cli import cli
from tests.acceptance.batch_store import make_batch


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'b.db'}"


def _run(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_cli_batches_show_list_and_close(url: str) -> None:
    batch = make_batch(url)
    shown = _run(url, "batches", "show", batch)
    assert shown.exit_code == 0, shown.output
    assert f"{batch}  open  queue=q  total=3  pending=0  completed=2  discarded=1" in shown.stdout
    assert shown.stdout.count("completed") == 3  # the counts line and two members
    listed = json.loads(_run(url, "batches", "list", "--json").stdout)
    assert [row["batch_id"] for row in listed] == [batch]
    assert listed[0]["open"] is True
    closed = _run(url, "batches", "close", batch)
    assert closed.stdout.strip() == f"closed batch {batch}"
    again = json.loads(_run(url, "batches", "show", batch, "--json").stdout)
    assert again["done"] is True
    assert len(again["members"]) == 3
    with quick.open(url) as db:
        assert [job.topic for job in quick.list_jobs(db, "q")] == ["done"]


def test_cli_batches_unknown_batch_exits_4(url: str) -> None:
    for command in ("show", "close"):
        result = _run(url, "batches", command, "nope")
        assert result.exit_code == 4
        assert "no batch 'nope'" in result.stderr
