"""``quick result JOB_ID``: a finished job's result as JSON, exit codes for the jobs that
have none, and a wait that ends when a worker finishes the job."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import quick
from keyspace.layout import RESULTS
from quick.cli import cli


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def _run(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _finish(url: str, job_id: str, how: str, result: object = None) -> None:
    with quick.open(url) as db:
        claims = quick.claim(db, "t1", "cli", limit=10)
        (claim,) = [c for c in claims if c.job_id == job_id]
        for other in claims:
            if other is not claim:
                quick.release(db, other)
        if how == "complete":
            quick.complete(db, claim, result=result)
        elif how == "discard":
            quick.discard(db, claim, "not needed")
        else:
            quick.dead_letter(db, claim, "gave up")


def test_cli_result_prints_the_value_as_json(url: str) -> None:
    with quick.open(url) as db:
        job_id = quick.enqueue(db, "t1", "t", None)
        empty = quick.enqueue(db, "t1", "t", None)
    _finish(url, job_id, "complete", {"total": 3, "raw": b"\x01\x02"})
    _finish(url, empty, "complete")
    shown = _run(url, "result", job_id)
    assert shown.exit_code == 0
    assert json.loads(shown.output) == {"total": 3, "raw": "0102"}
    as_json = _run(url, "result", job_id, "--json")
    assert json.loads(as_json.output) == {"job_id": job_id, "result": {"total": 3, "raw": "0102"}}
    assert json.loads(_run(url, "result", empty).output) is None


def test_cli_result_exit_codes(url: str) -> None:
    with quick.open(url) as db:
        pending = quick.enqueue(db, "t1", "t", None, delay=3600)
        dead = quick.enqueue(db, "t1", "t", None)
        discarded = quick.enqueue(db, "t1", "t", None)
    _finish(url, dead, "dead")
    _finish(url, discarded, "discard")
    cases = {
        pending: (5, "has not finished yet"),
        dead: (1, "dead-lettered: gave up"),
        discarded: (1, "discarded: not needed"),
        "no-such-job": (4, "never enqueued"),
    }
    for job_id, (code, words) in cases.items():
        result = _run(url, "result", job_id)
        assert (result.exit_code, words in result.output) == (code, True), result.output
    timed = _run(url, "result", pending, "--timeout", "0.05")
    assert timed.exit_code == 5
    assert "within 0.05 s" in timed.output
    assert _run(url, "result", pending, "--timeout", "-1").exit_code == 2


def test_cli_result_corrupt_record_is_named(url: str) -> None:
    with quick.open(url) as db:
        job_id = quick.enqueue(db, "t1", "t", None)
    _finish(url, job_id, "complete", 1)
    with quick.open(url) as db:
        db.transact(lambda tr: tr.set(RESULTS.pack((job_id,)), b"\x01\xc1"))
    result = _run(url, "result", job_id)
    assert result.exit_code == 1
    assert f"job result  job_id={job_id!r}" in result.output


def test_cli_result_wait_returns_when_the_job_finishes(url: str) -> None:
    with quick.open(url) as db:
        job_id = quick.enqueue(db, "t1", "t", None)
    finisher = threading.Timer(0.2, _finish, (url, job_id, "complete", [1, 2]))
    finisher.start()
    try:
        result = _run(url, "result", job_id, "--wait")
    finally:
        finisher.join()
    assert result.exit_code == 0
    assert json.loads(result.output) == [1, 2]


def test_check_deep_passes_results_and_names_a_corrupt_one(url: str) -> None:
    with quick.open(url) as db:
        good, bad = quick.enqueue(db, "t1", "t", None), quick.enqueue(db, "t1", "t", None)
    _finish(url, good, "complete", {"ok": True})
    _finish(url, bad, "complete", 1)
    clean = _run(url, "check", "--deep", "--json")
    assert (clean.exit_code, json.loads(clean.output)["problems"]) == (0, [])
    with quick.open(url) as db:
        db.transact(lambda tr: tr.set(RESULTS.pack((bad,)), b"\x01\x92\x01\x02"))  # a list
    found = _run(url, "check", "--deep", "--json")
    assert found.exit_code == 1
    (problem,) = json.loads(found.output)["problems"]
    assert problem["kind"] == "undecodable"
    assert problem["what"] == f"job result  job_id={bad!r}"
