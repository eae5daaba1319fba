"""A corrupt workflow run never hides the others: ``runs list`` skips and names it, ``runs
show/explain/cancel`` of it name its key (exit 1), and the dashboard's run page names it."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from click.testing import CliRunner, Result

import quick
import workflow
from keyspace.codec import pack_value
from keyspace.layout import WF_BY_STATUS, WF_JOURNAL, WF_RUNS
from keyspace.protocol import Transaction
from quick.cli import cli
from quick.testing import drain
from tests.acceptance.cli_workflow_app import ORDER, app

#: Stored values that are not run records: not msgpack, a list, a map without fields, a
#: map with a creation time that is text.
CORRUPT_RUNS = {
    "garbage": b"\x00\xffnot a record",
    "a-list": pack_value([1, 2, 3]),
    "no-fields": pack_value({"w": "order"}),
    "wrong-type": pack_value(
        {"w": "order", "rs": "running", "q": "t", "c": "yesterday", "df": [], "i": None}
    ),
}


def _invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args])


@pytest.fixture(params=sorted(CORRUPT_RUNS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    """A store with one good run and one corrupt one: (url, good run id, corrupt run id)."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        good = workflow.start_run(db, ORDER, {"order": 7}, queue_id="tenant-1")
        drain(db, app, queue_id="tenant-1")

        def plant(tr: Transaction) -> None:
            tr.set(WF_RUNS.pack(("bad-run",)), CORRUPT_RUNS[request.param])
            tr.set(WF_BY_STATUS.pack(("running", "order", "bad-run")), b"")

        db.transact(plant)
    return url, good, "bad-run"


@pytest.mark.parametrize("flags", [[], ["--json"], ["--status", "running"]])
def test_corrupt_runs_list_skips_and_names_the_corrupt_run(
    store: tuple[str, str, str], flags: list[str]
) -> None:
    url, good, _ = store
    result = _invoke(url, "runs", "list", *flags)
    assert result.exit_code == 0, result.output
    assert good in result.stdout
    assert "bad-run" not in result.stdout
    assert "warning: skipped corrupt record at" in result.stderr
    assert "run_id='bad-run'" in result.stderr


@pytest.mark.parametrize("command", ["show", "explain", "cancel", "pause", "resume", "retry"])
def test_corrupt_runs_acting_on_the_corrupt_run_names_its_key(
    store: tuple[str, str, str], command: str
) -> None:
    url, _, bad = store
    result = _invoke(url, "runs", command, bad)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"run {bad!r}: corrupt record at" in result.stderr
    assert "run_id='bad-run'" in result.stderr


def test_corrupt_runs_library_listing_leaves_the_corrupt_run_out(
    store: tuple[str, str, str],
) -> None:
    url, good, _ = store
    with quick.open(url) as db:
        assert [run.run_id for run in workflow.list_runs(db)] == [good]
        with pytest.raises(workflow.CorruptRun) as caught:
            workflow.inspect_run(db, "bad-run")
    assert caught.value.key == WF_RUNS.pack(("bad-run",))


def test_corrupt_runs_a_corrupt_journal_event_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        run_id = workflow.start_run(db, ORDER, {"order": 7}, queue_id="tenant-1")
        key = WF_JOURNAL.pack((run_id, b"\xff" * 10))  # sorts after every real event
        db.transact(lambda tr: tr.set(key, b"\x01" + msgpack.packb({"ev": 5})))
    for command in ("show", "explain"):
        result = _invoke(url, "runs", command, run_id)
        assert result.exit_code == 1, result.output
        assert "corrupt record at" in result.stderr
        assert "Traceback" not in result.output


def test_corrupt_runs_dashboard_run_page_names_the_record(store: tuple[str, str, str]) -> None:
    pytest.importorskip("flask", reason="needs the dashboard extra: pip install -e '.[dashboard]'")
    from quick.dashboard import create_app

    url, good, bad = store
    with quick.open(url) as db:
        client = create_app(db, allow_actions=False).test_client()
        page = client.get(f"/run?id={bad}")
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert "corrupt record at" in text
        assert "bad-run" in text
        assert client.get(f"/run?id={good}").status_code == 200
        listing = client.get("/runs")
        assert listing.status_code == 200
        assert good in listing.get_data(as_text=True)


def test_corrupt_runs_a_foreign_index_entry_is_skipped_and_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        good = workflow.start_run(db, ORDER, {"order": 7}, queue_id="tenant-1")
        db.transact(lambda tr: tr.set(WF_BY_STATUS.pack(("running", "order", 5)), b""))
    result = _invoke(url, "runs", "list")
    assert result.exit_code == 0, result.output
    assert good in result.stdout
    assert "warning: skipped corrupt record at" in result.stderr
