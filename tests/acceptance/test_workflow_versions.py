"""Versions in flight: runs keep the definition they started with across a redeploy.

Runs of version 1 are started and brought to an external step by the old code; then
worker processes on version 2 (steps renamed, removed, added, a topic moved) take over
while new runs of version 2 start. Old runs finish on their own definition, new runs
use version 2, and an old run reaching a step whose topic the new code no longer
handles fails with ``explain_run`` naming the step and its topic, instead of hanging.
"""

from __future__ import annotations

from pathlib import Path

import quick
from quick.testing import drain
from tests.acceptance.processes import start_worker, stop_worker, wait_until
from tests.acceptance.versions_app import FLOW_V1, FLOW_V2, app_v1
from workflow import explain_run, inspect_run, list_runs, result, signal, start_run

QUEUE = "orders"


def test_workflow_old_runs_finish_on_their_definition_after_a_redeploy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        old = {
            gift: [start_run(db, FLOW_V1, {"gift": gift}, queue_id=QUEUE) for _ in range(2)]
            for gift in (False, True)
        }
        drain(db, app_v1, queue_id=QUEUE)  # the old code runs each to its approval
        for runs in old.values():
            for run_id in runs:
                assert inspect_run(db, run_id).steps["approve"].status == "waiting"
        worker = start_worker(url, tmp_path / "out.txt", "tests.acceptance.versions_app:app_v2")
        try:
            new = [start_run(db, FLOW_V2, {"gift": False}, queue_id=QUEUE) for _ in range(3)]
            for runs in old.values():
                for run_id in runs:
                    signal(db, run_id, "approve", "ok")

            def ended() -> bool:
                statuses = [s.status for s in list_runs(db, workflow="orders")]
                return len(statuses) == 7 and "running" not in statuses

            wait_until(ended, 60, "every run to end")
        finally:
            stop_worker(worker)

        for run_id in old[False]:
            view = inspect_run(db, run_id)
            assert view.status == "succeeded", explain_run(db, run_id)
            assert list(view.steps) == ["validate", "approve", "gift?", "wrap", "ship"]
            assert view.steps["wrap"].status == "skipped"
            # the old definition's step and topic, run by the new deployment's code
            assert result(db, run_id) == {"by": "v2", "topic": "ship", "step": "ship"}
        for run_id in new:
            view = inspect_run(db, run_id)
            assert view.status == "succeeded"
            assert list(view.steps) == ["check", "pack", "ship"]
            assert result(db, run_id) == {"by": "v2", "topic": "ship2", "step": "ship"}
        for run_id in old[True]:
            said = explain_run(db, run_id)
            assert said.status == "failed"
            assert list(said.failed) == ["wrap"]
            assert "handler for its topic 'wrap'" in said.failed["wrap"]
            assert "deploy a worker with a handler for 'wrap', then retry" in str(said)
