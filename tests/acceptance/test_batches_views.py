"""Batch status from the CLI (``quick batches list/show/close``) and the dashboard
(``/batches``, ``/batch?id=``): counts by outcome, members, unknown ids, a corrupt record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import quick
from keyspace.layout import BATCHES
from quick.cli import cli
from quick.dashboard import create_app
from quick.testing import drain


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'b.db'}"


def _run(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _batch(url: str) -> str:
    app = quick.App()

    @app.job("work")
    def work(payload: int, meta: quick.Meta) -> None:
        if payload == 2:
            raise quick.Discard("no")

    with quick.open(url) as db:
        batch = quick.enqueue_batch(
            db, "q", [("work", i) for i in range(3)], on_complete=("done", None), keep_open=True
        )
        drain(db, app, queue_id="q")
    return batch


def test_cli_batches_show_list_and_close(url: str) -> None:
    batch = _batch(url)
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


def test_dashboard_batch_pages(url: str) -> None:
    batch = _batch(url)
    with quick.open(url) as db:
        client = create_app(db).test_client()
        listing = client.get("/batches").get_data(as_text=True)
        assert batch in listing
        page = client.get(f"/batch?id={batch}").get_data(as_text=True)
        assert "open to new members" in page
        assert "on_complete" in page
        assert page.count("<td>completed</td>") == 2
        assert client.get("/batch?id=nope").status_code == 404
        db.transact(lambda tr: tr.set(BATCHES.pack(("bad",)), b"\xff junk"))
        corrupt = client.get("/batch?id=bad")
        assert corrupt.status_code == 200
        assert "Corrupt batch bad" in corrupt.get_data(as_text=True)
        assert batch in client.get("/batches").get_data(as_text=True)  # the rest still listed
