"""Debounce and throttle: enqueue options counting jobs by key, exactly once under the
fault injector (a retry after a 1021 that committed neither runs a debounced job twice
nor loses its last payload, nor counts a throttled job twice)."""

from __future__ import annotations

import math
from typing import Any

import pytest

import quick
from keyspace.protocol import Database
from keyspace.retry import Tries
from keyspace.subspace import Subspace
from quick import flow
from quick.enqueueing import prepare
from quick.flow import Throttled
from quick.testing import drain


@pytest.fixture
def queue(space: Subspace) -> str:
    return f"f-{space.prefix[1][:12]}"


def _app(ran: list[Any]) -> quick.App:
    app = quick.App()

    @app.job("work")
    def work(payload: Any, meta: quick.Meta) -> None:
        ran.append(payload)

    return app


def test_flow_debounce_runs_the_last_payload_once_per_window(db: Database, queue: str) -> None:
    ran: list[Any] = []
    for window in range(20):
        ids = {
            quick.enqueue(db, queue, "work", [window, i], debounce=60, key="k") for i in range(4)
        }
        assert len(ids) == 1
        assert quick.job_state(db, ids.pop()) is quick.JobState.SCHEDULED
        drain(db, _app(ran))
        assert ran[-1:] == ([[window - 1, 3]] if window else [])
        drain(db, _app(ran), with_scheduled=True)
        assert ran[-1] == [window, 3]
    assert ran == [[window, 3] for window in range(20)]


def test_flow_debounce_keys_are_separate(db: Database, queue: str) -> None:
    ran: list[Any] = []
    a = quick.enqueue(db, queue, "work", "a", debounce=30, key="a")
    b = quick.enqueue(db, queue, "work", "b", debounce=30, key="b")
    assert a != b
    drain(db, _app(ran), with_scheduled=True)
    assert sorted(ran) == ["a", "b"]


def test_flow_throttle_drops_or_delays_the_extras(db: Database, queue: str) -> None:
    ran: list[Any] = []
    dropped = [
        quick.enqueue(db, queue, "work", i, throttle=(2, 3600), key="d", when_throttled="drop")
        for i in range(5)
    ]
    assert [r.outcome for r in dropped] == ["enqueued"] * 2 + ["dropped"] * 3
    assert all(r.job_id is None for r in dropped[2:])
    delayed = [quick.enqueue(db, queue, "work", i, throttle=(2, 3600), key="l") for i in range(5)]
    assert [r.outcome for r in delayed] == ["enqueued"] * 2 + ["delayed"] * 3
    windows = [r.run_at_ms for r in delayed[2:]]
    assert windows[0] == windows[1] < windows[2]
    assert windows[0] is not None
    assert windows[0] % 3_600_000 == 0
    assert windows[2] == windows[0] + 3_600_000
    drain(db, _app(ran))
    assert sorted(ran) == [0, 0, 1, 1]
    drain(db, _app(ran), with_scheduled=True)
    assert sorted(ran) == [0, 0, 1, 1, 2, 3, 4]


def test_flow_throttle_counts_each_job_once_under_retries(db: Database, queue: str) -> None:
    results = [quick.enqueue(db, queue, "work", i, throttle=(7, 3600), key="r") for i in range(30)]
    assert all(isinstance(r, Throttled) for r in results)
    kept = [r for r in results if r.outcome != "dropped"]
    assert [r.outcome for r in results[:7]] == ["enqueued"] * 7
    assert len({r.job_id for r in kept}) == 30
    per_window: dict[int | None, int] = {}
    for r in kept:
        per_window[r.run_at_ms if r.outcome == "delayed" else None] = (
            per_window.get(r.run_at_ms if r.outcome == "delayed" else None, 0) + 1
        )
    assert all(count <= 7 for count in per_window.values())
    assert len(quick.list_jobs(db, queue, limit=100)) == 30


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"debounce": 0, "key": "k"}, "debounce"),
        ({"debounce": -1, "key": "k"}, "debounce"),
        ({"debounce": math.nan, "key": "k"}, "debounce"),
        ({"debounce": math.inf, "key": "k"}, "debounce"),
        ({"debounce": "1", "key": "k"}, "debounce"),
        ({"debounce": 1e300, "key": "k"}, "debounce"),
        ({"throttle": (True, 1), "key": "k"}, "throttle"),
        ({"debounce": 1}, "key"),
        ({"key": "k"}, "key"),
        ({"debounce": 1, "key": "k", "delay": 5}, "debounce"),
        ({"debounce": 1, "key": "k", "unique_key": "u"}, "unique_key"),
        ({"debounce": 1, "throttle": (1, 1), "key": "k"}, "throttle"),
        ({"throttle": (0, 1), "key": "k"}, "throttle"),
        ({"throttle": (1, 0), "key": "k"}, "throttle"),
        ({"throttle": (1.5, 1), "key": "k"}, "throttle"),
        ({"throttle": (10**9, 1), "key": "k"}, "throttle"),
        ({"throttle": 3, "key": "k"}, "throttle"),
        ({"throttle": (1, 1), "key": "k", "when_throttled": "queue"}, "when_throttled"),
        ({"throttle": (1, 1), "key": ""}, "key"),
    ],
)
def test_flow_bad_options_are_refused_before_anything_is_written(
    db: Database, queue: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(quick.InvalidArgument) as raised:
        quick.enqueue(db, queue, "work", 1, **options)
    assert raised.value.field == field
    assert quick.list_jobs(db, queue) == []


# What the retry loop does after a 1021 that did commit: the same body, with the same
# prepared job and Tries, runs again.


def test_flow_debounce_retried_after_a_committed_try_keeps_one_job(
    exact_db: Database, queue: str
) -> None:
    ran: list[Any] = []
    first = quick.enqueue(exact_db, queue, "work", "first", debounce=60, key="k")
    prepared, tries = prepare(queue, "work", "last"), Tries()
    committed = exact_db.transact(flow._debounce, prepared, "k", 60_000, tries)
    tries.commit_unknown()
    retried = exact_db.transact(flow._debounce, prepared, "k", 60_000, tries)
    assert committed == retried == first
    drain(exact_db, _app(ran), with_scheduled=True)
    assert ran == ["last"]


def test_flow_throttle_retried_after_a_committed_try_counts_once(
    exact_db: Database, queue: str
) -> None:
    prepared, tries = prepare(queue, "work", 1), Tries()
    tr = exact_db.create_transaction()
    committed = flow._throttle(tr, prepared, "k", 1, 3_600_000, "delay", tries)
    tr.commit()
    tries.commit_unknown()
    retried = exact_db.transact(flow._throttle, prepared, "k", 1, 3_600_000, "delay", tries)
    assert retried == committed
    assert committed.outcome == "enqueued"
    after = quick.enqueue(exact_db, queue, "work", 2, throttle=(1, 3600), key="k")
    assert after.outcome == "delayed"
    assert len(quick.list_jobs(exact_db, queue)) == 2


def test_flow_debounce_never_hands_a_payload_to_a_started_job(db: Database, queue: str) -> None:
    first = quick.enqueue(db, queue, "work", "first", debounce=60, key="k")
    later = quick.jobs.now_ms() + 61_000
    (claim,) = quick.claim(db, queue, "w", now_ms=later)
    quick.snooze(db, claim, 3600)  # back to scheduled, in the future, attempt refunded
    second = quick.enqueue(db, queue, "work", "second", debounce=60, key="k")
    assert second != first
    payloads = {job.id: job.payload for job in quick.list_jobs(db, queue)}
    assert payloads == {first: "first", second: "second"}
