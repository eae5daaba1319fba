"""Per-queue limits in the claim transaction: running caps from the leased counter,
token-bucket rates, the ``"*"`` default, deferral of a capped queue's pointer, and
refusal of bad limits."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import quick
from keyspace.protocol import Database
from keyspace.retry import Tries
from quick import pointers
from quick.claim_rounds import claim_round
from quick.cli import cli
from quick.jobs import now_ms
from quick.limits import FULL_RETRY_MS

OWNER = "w1"


def _fill(db: Database, queue: str, n: int) -> None:
    quick.enqueue_many(db, [{"queue_id": queue, "topic": "t", "payload": i} for i in range(n)])


def test_limits_set_get_list_and_clear(db: Database) -> None:
    quick.set_queue_limits(db, "t1", max_running=3)
    quick.set_queue_limits(db, "*", max_per_second=2.5)
    assert quick.get_queue_limits(db, "t1") == quick.QueueLimits(queue_id="t1", max_running=3)
    assert [item.queue_id for item in quick.list_queue_limits(db)] == ["*", "t1"]
    quick.set_queue_limits(db, "t1")
    assert quick.get_queue_limits(db, "t1") is None
    assert quick.list_queue_limits(db) == [quick.QueueLimits(queue_id="*", max_per_second=2.5)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_running", 0),
        ("max_running", -1),
        ("max_running", 1.5),
        ("max_running", "2"),
        ("max_running", True),
        ("max_per_second", 0),
        ("max_per_second", -0.5),
        ("max_per_second", "fast"),
        ("max_per_second", float("nan")),
        ("max_running", 2**70),
        ("max_running", 1_000_001),
        ("max_per_second", 10**400),
        ("max_per_second", float("inf")),
        ("max_per_second", 1e-300),
        ("max_per_second", 1 / 86_401),
        ("max_per_second", 1_000_001),
    ],
)
def test_limits_refuse_bad_values_naming_the_field(db: Database, field: str, value: Any) -> None:
    with pytest.raises(quick.InvalidArgument) as refused:
        quick.set_queue_limits(db, "t1", **{field: value})
    assert refused.value.field == field
    assert quick.list_queue_limits(db) == []


def test_limits_max_running_caps_claims_until_jobs_finish(db: Database) -> None:
    _fill(db, "t1", 5)
    quick.set_queue_limits(db, "t1", max_running=2)
    now = now_ms()
    first = quick.claim(db, "t1", OWNER, limit=10, now_ms=now)
    assert len(first) == 2
    assert quick.claim(db, "t1", OWNER, limit=10, now_ms=now + FULL_RETRY_MS) == []
    quick.complete(db, first[0])
    assert len(quick.claim(db, "t1", OWNER, limit=10, now_ms=now + 2 * FULL_RETRY_MS)) == 1


def test_limits_default_applies_unless_a_queue_has_its_own(db: Database) -> None:
    _fill(db, "t1", 5)
    _fill(db, "t2", 5)
    quick.set_queue_limits(db, "*", max_running=1)
    quick.set_queue_limits(db, "t2", max_per_second=1000)  # its own record: no running cap
    assert len(quick.claim(db, "t1", OWNER, limit=10)) == 1
    assert len(quick.claim(db, "t2", OWNER, limit=10)) == 5


def test_limits_expired_leases_give_their_slots_back(db: Database) -> None:
    _fill(db, "t1", 2)
    quick.set_queue_limits(db, "t1", max_running=1)
    now = now_ms()
    assert len(quick.claim(db, "t1", OWNER, limit=10, lease_ms=1_000, now_ms=now)) == 1
    assert quick.claim(db, "t1", "w2", limit=10, now_ms=now + 500) == []
    assert len(quick.claim(db, "t1", "w2", limit=10, now_ms=now + 1_500)) == 1
    assert quick.queue_counts(db, "t1")["leased"] == 1


def test_limits_rate_is_a_token_bucket(db: Database) -> None:
    _fill(db, "t1", 20)
    quick.set_queue_limits(db, "t1", max_per_second=8)  # a burst of 2
    now = now_ms()
    assert len(quick.claim(db, "t1", OWNER, limit=10, now_ms=now)) == 2
    assert quick.claim(db, "t1", OWNER, limit=10, now_ms=now + 100) == []
    assert len(quick.claim(db, "t1", OWNER, limit=10, now_ms=now + 250)) == 2
    assert len(quick.claim(db, "t1", OWNER, limit=10, now_ms=now + 5_000)) == 2


def test_limits_capped_queue_leaves_the_scanners_alone_for_a_while(db: Database) -> None:
    _fill(db, "capped", 5)
    _fill(db, "free", 5)
    quick.set_queue_limits(db, "capped", max_running=1)
    now = now_ms()

    def round_at(at: int) -> list[str]:
        found = db.transact(
            lambda tr, tries: claim_round(tr, OWNER, at, limit=4, lease_ms=30_000, tries=tries),
            Tries(),
        )
        return sorted(c.queue_id for c in found.claims)

    assert round_at(now) == ["capped", "free", "free"]
    pointer = db.transact(lambda tr: pointers.read_pointer(tr, "capped"))
    assert pointer is not None
    assert pointer["v"] == now + FULL_RETRY_MS
    assert round_at(now + 1) == ["free", "free", "free"]


def test_limits_cli_sets_lists_clears_and_refuses_bad_input(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["--db", url, "limits", *args])
        return result.exit_code, result.output

    assert run("set", "t1", "--max-running", "2") == (
        0,
        "t1  max_running=2  max_per_second=-\n",
    )
    assert run("set", "*", "--max-per-second", "20")[0] == 0
    assert run("list") == (
        0,
        "*  max_running=-  max_per_second=20\nt1  max_running=2  max_per_second=-\n",
    )
    code, out = run("set", "t1", "--max-running", "0")
    assert code == 2
    assert "--max-running: must be 1 to 1,000,000" in out
    code, out = run("set", "t1", "--max-per-second", "1e-300")
    assert code == 2
    assert "--max-per-second: must be 1/86400 (one job a day) to 1,000,000, not 1e-300" in out
    code, out = run("set", "t1", "--max-per-second", "many")
    assert code == 2
    assert "--max-per-second" in out
    assert run("clear", "t1") == (0, "cleared the limits of t1\n")
    assert run("clear", "*")[0] == 0
    assert run("list") == (0, "(no limits)\n")
