"""``quick check --deep`` names every corrupt record kind: queue limits, rate buckets, moved
markers, jobs staged by a migration, and a job whose directory entry is missing or names
another queue. ``quick check --help`` says what a busy store does to the walk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import quick
from keyspace.codec import pack_value
from keyspace.layout import JOB_DIRECTORY, LIMITS, MIGRATING, MOVED, RATES
from keyspace.protocol import Database, Transaction
from quick.cli import cli

JUNK = b"\xff junk"

#: name -> (what to plant, given a job id of queue t1; the kind and key meaning expected).
Plant = Callable[[Transaction, str], None]
CASES: dict[str, tuple[Plant, str, str]] = {
    "limits-junk": (
        lambda tr, _: tr.set(LIMITS.pack(("t1",)), JUNK),
        "undecodable",
        "queue limits",
    ),
    "limits-wrong-types": (
        lambda tr, _: tr.set(LIMITS.pack(("*",)), pack_value({"mr": "lots", "mps": None})),
        "undecodable",
        "queue limits",
    ),
    "limits-a-list": (
        lambda tr, _: tr.set(LIMITS.pack(("t1",)), pack_value([2, 3])),
        "undecodable",
        "queue limits",
    ),
    "rate-wrong-types": (
        lambda tr, _: tr.set(RATES.pack(("t1",)), pack_value({"tk": "5", "at": "now"})),
        "undecodable",
        "queue rate bucket",
    ),
    "rate-junk": (
        lambda tr, _: tr.set(RATES.pack(("t1",)), JUNK),
        "undecodable",
        "queue rate bucket",
    ),
    "moved-junk": (
        lambda tr, _: tr.set(MOVED.pack(("t2",)), JUNK),
        "undecodable",
        "queue moved away",
    ),
    "moved-no-url": (
        lambda tr, _: tr.set(MOVED.pack(("t2",)), pack_value({"at": 5})),
        "undecodable",
        "queue moved away",
    ),
    "staging-junk": (
        lambda tr, _: tr.set(MIGRATING.pack(("t2", "job-x")), JUNK),
        "undecodable",
        "job being migrated in",
    ),
    "directory-missing": (
        lambda tr, job_id: tr.clear(JOB_DIRECTORY.pack((job_id,))),
        "job without directory entry",
        "job",
    ),
    "directory-other-queue": (
        lambda tr, job_id: tr.set(JOB_DIRECTORY.pack((job_id,)), pack_value({"q": "t9"})),
        "directory entry disagrees",
        "job",
    ),
}


def _deep(url: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--db", url, "check", "--deep", "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def _healthy(db: Database) -> str:
    """A store with jobs, limits and a used rate bucket; the id of a job of queue t1."""
    job_id = quick.enqueue(db, "t1", "t", 1)
    quick.enqueue(db, "t1", "t", 2)
    quick.set_queue_limits(db, "t1", max_running=5, max_per_second=100)
    quick.set_queue_limits(db, "*", max_running=3)
    quick.claim(db, "t1", "w1", limit=1)  # writes the rate bucket
    return job_id


def test_check_deep_records_a_healthy_store_with_limits_is_clean(url: str) -> None:
    with quick.open(url) as db:
        _healthy(db)
        assert db.transact(lambda tr: tr.get(RATES.pack(("t1",)))) is not None
    code, found = _deep(url)
    assert (code, found["problems"]) == (0, [])


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_deep_records_names_each_corrupt_kind(url: str, case: str) -> None:
    plant, kind, meaning = CASES[case]
    with quick.open(url) as db:
        job_id = _healthy(db)
        db.transact(lambda tr: plant(tr, job_id))
    code, found = _deep(url)
    assert code == 1, found
    seen = {(p["kind"], p["what"].split("  ")[0]) for p in found["problems"]}
    assert (kind, meaning) in seen, found["problems"]


def test_check_deep_records_help_warns_of_busy_stores() -> None:
    result = CliRunner().invoke(cli, ["check", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "busy store" in text
    assert "transient false problems" in text
    assert "Rerun it" in text
    assert "idle store" in text
