"""Keyed limits in the claim transaction: a running cap and a rate shared across queues,
jobs that wait (parked, no attempt used) without starving their queue, exact counts
through settlement, put-back and lease expiry, and refusal of bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import quick
from keyspace.codec import pack_value
from keyspace.layout import KEY_LIMITS, KEY_RATES, KEY_RUNNING, queue_keys
from keyspace.protocol import Database
from keyspace.retry import Tries
from quick.claim_rounds import claim_round
from quick.claiming import claim_jobs
from quick.cli import cli
from quick.jobs import JobState, now_ms
from quick.key_limits import MAX_LIMIT_KEYS, key_running, park_ms
from tests.integration.conflicts import commits

OWNER = "w1"


def _fill(db: Database, queue: str, n: int, keys: list[str] | None = None) -> list[str]:
    spec = {"queue_id": queue, "topic": "t", "limit_keys": keys}
    return quick.enqueue_many(db, [{**spec, "payload": i} for i in range(n)])


def _round(db: Database, at: int, limit: int = 10) -> list[quick.Claim]:
    found = db.transact(
        lambda tr, tries: claim_round(tr, OWNER, at, limit=limit, lease_ms=30_000, tries=tries),
        Tries(),
    )
    return found.claims


def test_key_limits_set_get_list_and_clear(db: Database) -> None:
    quick.set_key_limits(db, "stripe-api", max_running=3)
    quick.set_key_limits(db, "customer:42", max_per_second=2.5)
    assert quick.get_key_limits(db, "stripe-api") == quick.KeyLimits(
        key="stripe-api", max_running=3
    )
    assert [item.key for item in quick.list_key_limits(db)] == ["customer:42", "stripe-api"]
    quick.clear_key_limits(db, "stripe-api")
    assert quick.get_key_limits(db, "stripe-api") is None
    assert quick.list_key_limits(db) == [quick.KeyLimits(key="customer:42", max_per_second=2.5)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_running", 0),
        ("max_running", -1),
        ("max_running", 2**70),
        ("max_running", True),
        ("max_per_second", 0),
        ("max_per_second", -3.0),
        ("max_per_second", float("nan")),
        ("max_per_second", float("inf")),
        ("max_per_second", 10**400),
        ("key", ""),
        ("key", "   "),
        ("key", 42),
        ("key", "x" * 300),
        ("key", "bad\nkey"),
    ],
)
def test_key_limits_refuse_bad_values_naming_the_field(
    db: Database, field: str, value: Any
) -> None:
    args: dict[str, Any] = {"key": "k", "max_running": 2}
    args[field] = value
    with pytest.raises(quick.InvalidArgument) as refused:
        quick.set_key_limits(db, args.pop("key"), **args)
    assert refused.value.field == field
    assert quick.list_key_limits(db) == []


@pytest.mark.parametrize(
    "keys",
    ["one-string", [""], [7], ["ok", None], [f"k{i}" for i in range(MAX_LIMIT_KEYS + 1)]],
)
def test_key_limits_enqueue_refuses_bad_limit_keys(db: Database, keys: Any) -> None:
    with pytest.raises(quick.InvalidArgument) as refused:
        quick.enqueue(db, "q1", "t", None, limit_keys=keys)
    assert refused.value.field == "limit_keys"
    assert quick.queue_counts(db, "q1")["ready"] == 0


def test_key_limits_running_cap_is_shared_across_queues(db: Database) -> None:
    for queue in ("q1", "q2", "q3"):
        _fill(db, queue, 3, ["shared"])
    quick.set_key_limits(db, "shared", max_running=2)
    now = now_ms()
    claims = _round(db, now) + _round(db, now + 1)
    assert len(claims) == 2
    assert key_running(db, "shared") == 2
    # The others waited: parked, not failed, no attempt used.
    waiting = [
        job
        for q in ("q1", "q2", "q3")
        for job in quick.list_jobs(db, q)
        if job.state is JobState.SCHEDULED
    ]
    assert len(waiting) == 7
    assert all(job.attempt == 0 for job in waiting)
    quick.complete(db, claims[0])
    assert key_running(db, "shared") == 1
    later = _round(db, now + 10 * park_ms(10))
    assert len(later) == 1
    assert key_running(db, "shared") == 2


def test_key_limits_do_not_starve_the_queue_behind(db: Database) -> None:
    _fill(db, "q1", 5, ["slow-api"])
    free = _fill(db, "q1", 3)
    quick.set_key_limits(db, "slow-api", max_running=1)
    now = now_ms()
    got = quick.claim(db, "q1", OWNER, limit=6, now_ms=now)
    got += quick.claim(db, "q1", OWNER, limit=6, now_ms=now + 1)
    # One keyed job runs, the four others wait (parked); the free jobs behind them run.
    assert sorted(c.job_id for c in got if c.job_id not in free) == [got[0].job_id]
    assert set(free) <= {c.job_id for c in got}


def test_key_limits_count_out_through_failure_release_and_expiry(db: Database) -> None:
    _fill(db, "q1", 3, ["k"])
    quick.set_key_limits(db, "k", max_running=3)
    now = now_ms()
    a, b, c = quick.claim(db, "q1", OWNER, limit=3, lease_ms=1_000, now_ms=now)
    assert key_running(db, "k") == 3
    quick.fail(db, a, "boom")
    quick.release(db, b)
    assert key_running(db, "k") == 1
    # c's lease expires: the next claim promotes it and gives its slot back.
    again = quick.claim(db, "q1", "w2", limit=3, lease_ms=30_000, now_ms=now + 120_000)
    assert {x.job_id for x in again} >= {c.job_id}
    assert key_running(db, "k") == len(again)
    for claim in again:
        quick.complete(db, claim)
    assert key_running(db, "k") == 0
    assert db.transact(lambda tr: tr.get(KEY_RUNNING.pack(("k",)))) is None  # no trace left


def test_key_limits_rate_is_a_token_bucket(db: Database) -> None:
    _fill(db, "q1", 10, ["rated"])
    _fill(db, "q2", 10, ["rated"])
    quick.set_key_limits(db, "rated", max_per_second=8)  # a burst of 2
    now = now_ms()
    assert len(_round(db, now)) == 2
    assert _round(db, now + 100) == []
    assert len(_round(db, now + 600)) == 2


def test_key_limits_all_keys_must_have_room(db: Database) -> None:
    quick.set_key_limits(db, "a", max_running=5)
    quick.set_key_limits(db, "b", max_running=1)
    _fill(db, "q1", 3, ["a", "b"])
    _fill(db, "q2", 3, ["a"])
    claims = _round(db, now_ms(), limit=10)
    assert sorted(c.queue_id for c in claims) == ["q1", "q2", "q2", "q2"]
    assert key_running(db, "a") == 4
    assert key_running(db, "b") == 1


def test_key_limits_keys_without_limits_run_freely_and_are_counted(db: Database) -> None:
    _fill(db, "q1", 4, ["unlimited"])
    claims = quick.claim(db, "q1", OWNER, limit=10)
    assert len(claims) == 4
    assert key_running(db, "unlimited") == 4


def test_key_limits_app_topic_keys_join_the_enqueued_ones(db: Database) -> None:
    app = quick.App()

    @app.job("charge", limit_keys=["stripe-api"])
    def charge(payload: Any, meta: quick.Meta) -> None: ...

    job_id = app.enqueue(db, "q1", "charge", {}, limit_keys=["customer:42", "stripe-api"])
    job = quick.get_job(db, job_id)
    assert job is not None
    assert job.limit_keys == ("stripe-api", "customer:42")
    with pytest.raises(quick.InvalidArgument):
        app.job("other", limit_keys=["ok", ""])


def test_key_limits_records_without_keys_stay_as_they_were(db: Database) -> None:
    job_id = quick.enqueue(db, "q1", "t", None)
    raw = db.transact(lambda tr: tr.get(queue_keys("q1").job(job_id)))
    assert raw is not None
    assert b"lk" not in raw


def test_key_limits_cli_sets_lists_clears_and_refuses_bad_input(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["--db", url, *args])
        return result.exit_code, result.output

    assert run("limits", "set-key", "stripe-api", "--max-running", "2") == (
        0,
        "key stripe-api  max_running=2  max_per_second=-  running=0\n",
    )
    assert run("limits", "set", "t1", "--max-per-second", "5")[0] == 0
    assert run("enqueue", "t1", "charge", "--limit-key", "stripe-api")[0] == 0
    with quick.open(url) as db:
        assert len(quick.claim(db, "t1", OWNER, limit=5)) == 1
    assert run("limits", "list") == (
        0,
        "t1  max_running=-  max_per_second=5\n"
        "key stripe-api  max_running=2  max_per_second=-  running=1\n",
    )
    code, out = run("limits", "set-key", "stripe-api", "--max-running", "0")
    assert code == 2
    assert "--max-running: must be 1 to 1,000,000" in out
    code, out = run("limits", "set-key", "stripe-api", "--max-per-second", "nan")
    assert code == 2
    assert "--max-per-second" in out
    code, out = run("limits", "set-key", "stripe-api")
    assert code == 2
    code, out = run("enqueue", "t1", "charge", "--limit-key", " ")
    assert code == 2
    assert "--limit-key: must not be empty" in out
    assert run("limits", "clear-key", "stripe-api") == (0, "cleared the limits of key stripe-api\n")
    assert run("limits", "clear", "t1")[0] == 0
    assert run("limits", "list") == (0, "(no limits)\n")


def test_key_limits_dead_letter_gives_the_slot_back_and_requeue_keeps_the_keys(
    db: Database,
) -> None:
    (job_id,) = _fill(db, "q1", 1, ["k"])
    quick.set_key_limits(db, "k", max_running=1)
    (claim,) = quick.claim(db, "q1", OWNER)
    quick.dead_letter(db, claim, "gave up")
    assert key_running(db, "k") == 0
    quick.requeue_dead(db, "q1", job_id)
    job = quick.get_job(db, job_id)
    assert job is not None
    assert job.limit_keys == ("k",)


@pytest.mark.parametrize("limits", [{"max_running": 1}, {"max_per_second": 1.0}])
def test_key_limits_concurrent_claims_of_one_key_conflict(
    exact_db: Database, limits: dict[str, Any]
) -> None:
    _fill(exact_db, "q1", 1, ["k"])
    _fill(exact_db, "q2", 1, ["k"])
    quick.set_key_limits(exact_db, "k", **limits)
    now = now_ms()
    first, second = exact_db.create_transaction(), exact_db.create_transaction()
    got1 = claim_jobs(first, "q1", OWNER, now, 5, 30_000, "t1")
    got2 = claim_jobs(second, "q2", OWNER, now, 5, 30_000, "t2")
    assert (len(got1), len(got2)) == (1, 1)  # each alone sees room
    assert commits(first)
    assert not commits(second)  # serialized: the second retries and sees the first's job
    again = exact_db.transact(lambda tr: claim_jobs(tr, "q2", OWNER, now, 5, 30_000, "t3"))
    assert again == []
    assert key_running(exact_db, "k") == 1


def test_key_limits_claims_of_unlimited_keys_do_not_conflict(exact_db: Database) -> None:
    _fill(exact_db, "q1", 1, ["k"])
    _fill(exact_db, "q2", 1, ["k"])
    quick.set_key_limits(exact_db, "other", max_running=1)
    now = now_ms()
    first, second = exact_db.create_transaction(), exact_db.create_transaction()
    assert len(claim_jobs(first, "q1", OWNER, now, 5, 30_000, "t1")) == 1
    assert len(claim_jobs(second, "q2", OWNER, now, 5, 30_000, "t2")) == 1
    assert commits(first)
    assert commits(second)
    assert key_running(exact_db, "k") == 2


@pytest.mark.parametrize(
    "raw",
    [b"\x01\xc1", pack_value({"mr": 0}), pack_value([1, 2]), pack_value({"mr": 2, "tk": 1.0})],
)
def test_key_limits_untrusted_records_never_stop_claims(db: Database, raw: bytes) -> None:
    _fill(db, "q1", 3, ["k"])
    db.transact(lambda tr: tr.set(KEY_LIMITS.pack(("k",)), raw))
    db.transact(lambda tr: tr.set(KEY_RATES.pack(("k",)), b"junk"))
    db.transact(lambda tr: tr.set(KEY_RUNNING.pack(("k",)), b"short"))
    assert len(quick.claim(db, "q1", OWNER, limit=5)) == 3  # no limit that decodes
    assert quick.list_key_limits(db) == []
