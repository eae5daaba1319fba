"""``quick job JOB_ID`` and ``quick cancel JOB_ID``: one job's view (progress included)
and cancelling it, waiting or running."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import quick
from consumer.keeper import Held
from quick.cli import cli
from quick.jobs import now_ms
from quick.leases import heartbeat_all


def _run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    return result.exit_code, result.output


def test_cli_job_shows_a_running_jobs_progress_and_cancel_stops_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        job_id = quick.enqueue(db, "tenant", "report", {"n": 1})
        (claim,) = quick.claim(db, "tenant", "worker-1")
        held = Held(claim, None)
        quick.outcomes.meta_for(claim, held.signals).progress(0.4, "page 4 of 10")
        pending = held.signals.unwritten()
        assert pending is not None
        # What the worker's lease keeper does with its next renewal.
        db.transact(heartbeat_all, [claim], 30_000, now_ms(), [pending[1]])

        code, out = _run(url, "job", job_id)
        assert code == 0, out
        assert "state: leased" in out
        assert "progress: 40% page 4 of 10" in out
        assert "owner: worker-1" in out
        code, out = _run(url, "job", job_id, "--json")
        view = json.loads(out)
        assert view["progress"]["fraction"] == 0.4
        assert view["progress"]["text"] == "page 4 of 10"
        assert view["payload"] == {"n": 1}
        code, out = _run(url, "jobs", "tenant")
        assert "progress 40%" in out

        code, out = _run(url, "cancel", job_id)
        assert (code, out.strip()) == (0, f"{job_id}: cancel requested (running)")
        code, out = _run(url, "job", job_id)
        assert "cancel requested: yes" in out
        quick.complete(db, claim)  # its worker settles it: the mark makes it a cancel
        code, out = _run(url, "job", job_id)
        assert (code, out.strip()) == (0, f"job id: {job_id}\nstate: cancelled")


def test_cli_cancel_and_job_of_unknown_ids_exit_4(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        waiting = quick.enqueue(db, "tenant", "report", None, delay=60)
    code, out = _run(url, "cancel", waiting)
    assert (code, out.strip()) == (0, f"{waiting}: cancelled")
    assert _run(url, "cancel", "nope")[0] == 4
    assert _run(url, "job", "nope")[0] == 4
