"""Workflow runs from the command line: ``quick runs ...`` and ``quick signal``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import quick
import workflow
from quick.cli import cli
from quick.testing import drain
from tests.acceptance.cli_workflow_app import FLAKY, ORDER, app
from tests.acceptance.processes import ROOT, start_worker
from workflow.views import layers

QUICK = Path(sys.executable).with_name("quick")


def _run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    return result.exit_code, result.output


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


@pytest.fixture
def start(url: str) -> Callable[[workflow.Workflow], str]:
    """Start a run of a workflow on queue tenant-1 and run its steps as far as they go."""

    def started(wf: workflow.Workflow) -> str:
        with quick.open(url) as db:
            run_id = workflow.start_run(db, wf, {"order": 7}, queue_id="tenant-1")
            drain(db, app, queue_id="tenant-1")
        return run_id

    return started


def test_layers_put_each_step_below_its_deepest_dependency() -> None:
    after = {"fetch": (), "a": ("fetch",), "b": ("fetch",), "ok": ("a",), "join": ("ok", "b")}
    assert layers(after) == [["fetch"], ["a", "b"], ["ok"], ["join"]]
    assert layers({"x": (), "y": ()}) == [["x", "y"]]


def test_cli_runs_show_draws_the_dag_with_step_states(url: str, start: Callable[..., str]) -> None:
    run_id = start(ORDER)
    code, out = _run(url, "runs", "show", run_id)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"run {run_id}"
    assert "workflow order, queue tenant-1, running" in lines[1]
    body = "\n".join(lines[3:])
    assert "layer 1\n  ✓ fetch   (succeeded, 1 attempt, " in body
    assert "  ✓ b       (succeeded, 1 attempt, " in body
    assert "  ○ approve (external, waiting, awaiting signal)  after: a" in body
    assert "  ○ join    (waiting)  after: approve, b" in body
    assert lines[-1] == "5 steps: 3 succeeded, 2 waiting"
    code, ascii_out = _run(url, "runs", "show", run_id, "--ascii")
    assert "  + fetch " in ascii_out
    assert "  . join " in ascii_out
    ascii_out.encode("ascii")
    code, out = _run(url, "runs", "show", run_id, "--json")
    assert code == 0
    shown = json.loads(out)
    steps = {step["key"]: step for step in shown["steps"]}
    assert (steps["join"]["layer"], steps["join"]["after"]) == (4, ["approve", "b"])
    assert steps["a"]["output"] == "a done"
    assert shown["journal"][0]["kind"] == "run_started"


def test_cli_signal_completes_the_run(url: str, start: Callable[..., str]) -> None:
    run_id = start(ORDER)
    code, out = _run(url, "runs", "explain", run_id)
    assert code == 0
    assert out.startswith(f"run {run_id} is running: waiting for a signal on 'approve'")
    assert f"`quick signal {run_id} approve --payload JSON`" in out
    code, out = _run(url, "signal", run_id, "approve", "--payload", '{"by": "ada"}')
    assert (code, out) == (0, f"signalled step 'approve' of run {run_id}\n")
    with quick.open(url) as db:
        drain(db, app, queue_id="tenant-1")
    code, out = _run(url, "runs", "explain", run_id, "--json")
    assert json.loads(out)["summary"] == "every step succeeded"
    code, out = _run(url, "runs", "show", run_id, "--json")
    steps = {step["key"]: step for step in json.loads(out)["steps"]}
    assert steps["approve"]["output"] == {"by": "ada"}
    assert json.loads(out)["status"] == "succeeded"


def test_cli_signal_errors_are_messages_with_exit_codes(
    url: str, start: Callable[..., str]
) -> None:
    run_id = start(ORDER)
    code, out = _run(url, "signal", run_id, "approve", "--payload", "{nope")
    assert code == 2
    assert "--payload is not valid JSON" in out
    code, out = _run(url, "signal", "no-such-run", "approve")
    assert code == 4
    assert "no workflow run 'no-such-run'" in out
    code, out = _run(url, "signal", run_id, "fetch")
    assert code == 1
    assert "it is a task step, not an external one" in out
    code, out = _run(url, "signal", run_id, "nowhere")
    assert code == 1
    assert "the workflow has no such step" in out
    assert _run(url, "signal", run_id, "approve")[0] == 0
    code, out = _run(url, "signal", run_id, "approve")
    assert code == 1
    assert "it has already been signalled" in out
    assert "Traceback" not in out


def test_cli_runs_list_filters_and_json(url: str, start: Callable[..., str]) -> None:
    assert _run(url, "runs", "list") == (0, "(no runs)\n")
    order, flaky = start(ORDER), start(FLAKY)
    code, out = _run(url, "runs", "list", "--json")
    assert code == 0
    listed = {row["run_id"]: row["status"] for row in json.loads(out)}
    assert listed == {order: "running", flaky: "failed"}
    code, out = _run(url, "runs", "list", "--status", "failed")
    assert code == 0
    assert flaky in out
    assert order not in out
    code, out = _run(url, "runs", "list", "--workflow", "order", "--json")
    assert [row["run_id"] for row in json.loads(out)] == [order]
    code, out = _run(url, "runs", "list", "--status", "bogus")
    assert code == 2
    assert "choose one of running, paused, succeeded, failed, cancelled" in out


def test_cli_runs_pause_resume_cancel_retry(url: str, start: Callable[..., str]) -> None:
    flaky = start(FLAKY)
    code, out = _run(url, "runs", "show", flaky)
    assert "  ✗ x (failed, 1 attempt, " in out
    assert "error: RuntimeError: kaboom" in out
    assert "why: depends on step 'x', which failed" in out
    code, out = _run(url, "runs", "retry", flaky)
    assert (code, out) == (0, f"retried run {flaky}: it is running\n")
    code, out = _run(url, "runs", "retry", flaky)
    assert code == 1
    assert f"cannot retry run '{flaky}': it is running" in out
    with quick.open(url) as db:
        order = workflow.start_run(db, ORDER, None, queue_id="tenant-2")
    assert _run(url, "runs", "pause", order) == (0, f"paused run {order}: it is paused\n")
    code, out = _run(url, "runs", "explain", order)
    assert "it is paused" in out
    assert _run(url, "runs", "resume", order) == (0, f"resumed run {order}: it is running\n")
    assert _run(url, "runs", "cancel", order) == (0, f"cancelled run {order}: it is cancelled\n")
    code, out = _run(url, "runs", "pause", order)
    assert code == 1
    assert "it is cancelled" in out
    for action in ("show", "explain", "cancel", "pause", "resume", "retry"):
        code, out = _run(url, "runs", action, "missing")
        assert code == 4, action
        assert "no workflow run 'missing'" in out


def test_cli_workflow_commands_keep_workflow_out_of_import_quick() -> None:
    code = "import json, sys, quick.cli; print(json.dumps('workflow' in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "false"


def _quick(url: str, *args: str, encoding: str = "utf-8") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "QUICK_DB": url, "PYTHONIOENCODING": encoding, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(QUICK), *args], capture_output=True, env=env, cwd=ROOT)


@pytest.mark.slow
def test_cli_quick_process_runs_a_workflow_with_a_real_worker(url: str, tmp_path: Path) -> None:
    with quick.open(url) as db:
        run_id = workflow.start_run(db, ORDER, {"order": 7}, queue_id="tenant-1")
    worker = start_worker(url, tmp_path / "out.txt", "tests.acceptance.cli_workflow_app:app")
    try:
        deadline = time.monotonic() + 60
        while "awaiting signal" not in _quick(url, "runs", "show", run_id).stdout.decode():
            assert time.monotonic() < deadline, "the run never reached its external step"
            time.sleep(0.1)
        bad = _quick(url, "signal", run_id, "approve", "--payload", "[1,")
        assert bad.returncode == 2
        assert b"--payload is not valid JSON" in bad.stderr
        assert b"Traceback" not in bad.stderr
        assert _quick(url, "signal", run_id, "approve", "--payload", "true").returncode == 0
        while json.loads(_quick(url, "runs", "show", run_id, "--json").stdout)["status"] != (
            "succeeded"
        ):
            assert time.monotonic() < deadline, "the run never finished"
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
    shown = _quick(url, "runs", "show", run_id, encoding="ascii")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode("ascii")
    assert "  + join    (succeeded, 1 attempt, " in text
    assert text.splitlines()[-1] == "5 steps: 5 succeeded"
    missing = _quick(url, "runs", "explain", "missing")
    assert missing.returncode == 4
    assert missing.stderr.decode() == "Error: no workflow run 'missing'\n"
