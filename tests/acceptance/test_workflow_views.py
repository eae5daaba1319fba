"""Maps and child runs as ``quick runs show``/``explain`` and the dashboard's run page show them:
a map is one node with its counts, expandable to its instances; a child step links its run."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import quick
import workflow
from quick.cli import cli
from quick.testing import drain

app = quick.App()


@app.job("emit")
def emit(payload: Any, meta: quick.Meta) -> Any:
    return list(range(payload))


@app.job("each", max_attempts=1)
def each(item: Any, meta: quick.Meta) -> Any:
    if item == 3:
        raise RuntimeError("three is bad")
    return item * 10


MAPPED = (
    workflow.Workflow("mapped")
    .step("s", topic="emit")
    .map("m", topic="each", over="s")
    .step("after", topic="emit", after="m")
)
KID = workflow.Workflow("kid").external("approve")
PARENT = workflow.Workflow("parent").child("c", workflow=KID)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


@pytest.fixture
def db(url: str) -> Iterator[Any]:
    with quick.open(url) as opened:
        yield opened


def _run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    return result.exit_code, result.output


def test_cli_runs_show_a_map_as_one_line_with_counts_and_lists_its_instances(
    url: str, db: Any
) -> None:
    run_id = workflow.start_run(db, MAPPED, 6, queue_id="t")
    drain(db, app, queue_id="t")
    code, out = _run(url, "runs", "show", run_id, "--ascii")
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if " m " in line]
    assert "map" in line
    assert "failed" in line
    code, out = _run(url, "runs", "show", run_id, "--instances", "m")
    assert code == 0, out
    rows = out.splitlines()
    assert rows[3].split()[:2] == ["3", "failed"]
    assert "RuntimeError: three is bad" in rows[3]
    code, out = _run(url, "runs", "show", run_id, "--instances", "m", "--start", "4", "--json")
    assert code == 0, out
    assert [row["index"] for row in json.loads(out)] == [4, 5]
    code, out = _run(url, "runs", "show", run_id, "--instances", "s")
    assert code != 0
    assert "no such map step" in out
    code, out = _run(url, "runs", "show", run_id, "--json")
    (m,) = [step for step in json.loads(out)["steps"] if step["key"] == "m"]
    assert m["instances"]["failed"] == 1


def test_cli_runs_explain_follows_a_child_run(url: str, db: Any) -> None:
    run_id = workflow.start_run(db, PARENT, None, queue_id="t")
    child = workflow.inspect_run(db, run_id).steps["c"].child_run
    code, out = _run(url, "runs", "explain", run_id)
    assert code == 0, out
    assert f"waiting for child run {child}" in out
    assert "waiting for a signal on 'approve'" in out
    code, out = _run(url, "runs", "show", run_id)
    assert f"child run {child}" in out


def test_dashboard_run_page_shows_a_map_node_with_counts_expandable_to_instances(
    db: Any,
) -> None:
    pytest.importorskip("flask", reason="the dashboard extra is not installed")
    from quick.dashboard import create_app

    run_id = workflow.start_run(db, MAPPED, 6, queue_id="t")
    drain(db, app, queue_id="t")
    client = create_app(db, allow_actions=False).test_client()
    html = client.get(f"/run?id={run_id}").get_data(as_text=True)
    assert "<title>m: failed</title>" in html
    assert re.search(r"failed · [0-5]/6<", html)  # those that ran before 3 failed the map
    expanded = client.get(f"/run?id={run_id}&instances=m").get_data(as_text=True)
    assert "Instances of <code>m</code>" in expanded
    assert "three is bad" in expanded
    parent = workflow.start_run(db, PARENT, None, queue_id="t")
    child = workflow.inspect_run(db, parent).steps["c"].child_run
    html = client.get(f"/run?id={parent}").get_data(as_text=True)
    assert f"/run?id={child}" in html
