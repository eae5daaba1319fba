"""The ``quick.testing`` pytest plugin: its fixtures (run in an inner pytest through
``pytester``), ``--quick-db``, and ``drain`` / ``enqueued`` / ``assert_enqueued``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import keyspace
import quick
from keyspace.protocol import Database, Transaction
from quick.testing import assert_enqueued, drain, enqueued, url_for_test
from workflow import Workflow, inspect_run, start_run

pytest_plugins = ["pytester"]

USER_TESTS = """
import quick
from quick.testing import assert_enqueued, drain

app = quick.App()

@app.job("email:send")
def send(payload, meta):
    return None

def test_signup_sends_a_welcome_email(quick_db):
    quick.enqueue(quick_db, "tenant-1", "email:send", {"to": "ada@example.com"})
    assert_enqueued(quick_db, topic="email:send", payload={"to": "ada@example.com"})
    assert drain(quick_db, app) == {"completed": 1}

def test_each_test_starts_empty(quick_db):
    assert quick.list_queues(quick_db) == []
    quick.enqueue(quick_db, "tenant-1", "email:send", None)

def test_faulty_db_shares_the_data(quick_db, quick_faulty_db):
    for i in range(20):
        quick.enqueue(quick_faulty_db, "tenant-1", "email:send", i)
    assert drain(quick_faulty_db, app) == {"completed": 20}
    assert quick.queue_counts(quick_db, "tenant-1")["ready"] == 0
    assert sum(quick_faulty_db.injected.values()) > 0
"""


def test_testing_plugin_fixtures_give_each_test_a_fresh_database(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_testing_plugin_quick_db_option_namespaces_each_test_and_clears_it(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    pytester.makepyfile(
        test_user=USER_TESTS
        + f"""
def test_url_is_the_option_in_a_namespace(quick_db_url):
    assert quick_db_url.startswith({shared!r} + "?namespace=quick-test-")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--quick-db", shared)
    result.assert_outcomes(passed=4)
    with keyspace.open(shared) as db:
        assert db.transact(lambda tr: tr.get_range(b"", b"\xff")) == []


def test_testing_plugin_reads_the_database_from_the_environment(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("QUICK_TEST_DB", shared)
    pytester.makepyfile(
        test_env=f"""
def test_env(quick_db_url):
    assert quick_db_url.startswith({shared!r} + "?namespace=")
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_testing_url_for_test_nests_an_existing_namespace() -> None:
    url = url_for_test("fdb:///etc/fdb.cluster?namespace=ci&timeout=5000", "/tmp/x", "t::a")
    assert url.startswith("fdb:///etc/fdb.cluster?timeout=5000&namespace=ci.quick-test-")
    assert url_for_test(None, "/tmp/x", "t::a") == "sqlite:////tmp/x/quick.db"


# -- drain ---------------------------------------------------------------------------------


def _flaky_app(fails: int) -> tuple[quick.App, list[int]]:
    app = quick.App()
    attempts: list[int] = []

    @app.job("flaky")
    def flaky(payload: Any, meta: quick.Meta) -> str:
        attempts.append(meta.attempt)
        if meta.attempt <= fails:
            raise RuntimeError(f"attempt {meta.attempt}")
        return "ok"

    return app, attempts


def test_drain_runs_visible_jobs_and_leaves_retries_for_later(db: Database) -> None:
    app, attempts = _flaky_app(fails=1)
    quick.enqueue(db, "t1", "flaky", None)
    assert drain(db, app) == {"requeued": 1}
    assert drain(db, app) == {}
    assert attempts == [1]
    assert [job.attempt for job in enqueued(db, topic="flaky")] == [1]


def test_drain_with_scheduled_fast_forwards_backoff_and_delays(db: Database) -> None:
    app, attempts = _flaky_app(fails=2)
    quick.enqueue(db, "t1", "flaky", None)
    quick.enqueue(db, "t2", "flaky", None, delay=3600)
    assert drain(db, app, with_scheduled=True) == {"requeued": 4, "completed": 2}
    assert sorted(attempts) == [1, 1, 2, 2, 3, 3]
    assert enqueued(db) == []


def test_drain_dead_letters_a_job_that_keeps_failing(db: Database) -> None:
    app, _ = _flaky_app(fails=99)
    job_id = quick.enqueue(db, "t1", "flaky", None, max_attempts=3)
    assert drain(db, app, with_scheduled=True) == {"requeued": 2, "dead_lettered": 1}
    assert [dead.job_id for dead in quick.list_dead(db, "t1")] == [job_id]


def test_drain_stops_after_max_jobs(db: Database) -> None:
    app = quick.App()

    @app.job("forever")
    def forever(payload: Any, meta: quick.Meta) -> None:
        raise quick.Snooze(60)

    quick.enqueue(db, "t1", "forever", None)
    assert drain(db, app, with_scheduled=True, max_jobs=7) == {"snoozed": 7}
    assert len(enqueued(db)) == 1


def test_drain_runs_async_transactional_and_unknown_topics(db: Database) -> None:
    app = quick.App()
    ran: list[str] = []

    @app.job("async", loop="trio")
    async def on_async(payload: Any, meta: quick.Meta) -> None:
        import trio

        await trio.sleep(0)
        ran.append("async")

    @app.job("tx")
    def on_tx(tr: Transaction, payload: Any, meta: quick.Meta) -> None:
        quick.enqueue(tr, "t2", "async", "from tx")  # a job enqueued by a handler runs too

    @app.job("slow", timeout=0.05, max_attempts=1, loop="trio")
    async def slow(payload: Any, meta: quick.Meta) -> None:
        import trio

        await trio.sleep(10)

    quick.enqueue(db, "t1", "tx", None)
    quick.enqueue(db, "t1", "nobody", None)
    quick.enqueue(db, "t1", "slow", None)
    assert drain(db, app) == {"completed": 2, "dead_lettered": 2}
    assert ran == ["async"]
    errors = sorted(dead.error for dead in quick.list_dead(db, "t1"))
    assert errors == [
        "TimeoutError: timed out after 0.05 s",
        "unknown topic 'nobody': no handler is registered",
    ]


def test_drain_of_one_queue_leaves_the_others(db: Database) -> None:
    app, _ = _flaky_app(fails=0)
    quick.enqueue(db, "t1", "flaky", None)
    quick.enqueue(db, "t2", "flaky", None)
    assert drain(db, app, queue_id="t1") == {"completed": 1}
    assert [job.queue for job in enqueued(db)] == ["t2"]


def test_drain_finishes_a_workflow_with_sleeps_in_one_call(db: Database) -> None:
    app, _ = _flaky_app(fails=1)
    wf = (
        Workflow("nap")
        .step("a", topic="flaky")
        .sleep("wait", seconds=3600, after="a")
        .step("b", topic="flaky", after="wait")
    )
    run_id = start_run(db, wf, None, queue_id="t1")
    outcomes = drain(db, app, with_scheduled=True)
    assert inspect_run(db, run_id).status == "succeeded"
    assert outcomes["completed"] == 3


# -- enqueued / assert_enqueued ------------------------------------------------------------


def test_assert_enqueued_names_what_was_enqueued_instead(db: Database) -> None:
    quick.enqueue(db, "t1", "email:send", {"to": "ada"})
    quick.enqueue(db, "t2", "sms:send", 7)
    assert assert_enqueued(db, topic="sms:send", payload=7).queue == "t2"
    assert [job.topic for job in enqueued(db, queue_id="t1")] == ["email:send"]
    with pytest.raises(AssertionError) as failed:
        assert_enqueued(db, topic="email:send", payload={"to": "bob"})
    message = str(failed.value)
    assert "no job enqueued with topic='email:send', payload={'to': 'bob'}" in message
    assert "t1 email:send {'to': 'ada'}" in message
    assert "t2 sms:send 7" in message
