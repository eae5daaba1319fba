"""Listings, cron and workflow settlement stay short on a remote cluster.

A FoundationDB transaction lives at most 5 seconds and every read that reaches the
store is a round trip (0.5 to 10 ms on a remote cluster). On a store of 500 queues,
hundreds of runs and schedules, and a run of 60 parallel steps (:mod:`tests.long_store`),
each transaction these paths make must stay under 5 s on ``?latency=read:10``, with a
number of read round trips that does not grow with the data (counted by
:mod:`tests.latency_probe`, so the assertions do not depend on the machine's speed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import quick
import workflow
from quick import inspection
from quick.outcomes import Attempt, job_config, run_attempt, settle_batch
from tests.latency_probe import Probe, Try
from tests.long_store import FAN, QUEUES, RUNS, SCHEDULES, app, build_store, run_all, start_fan

LIFETIME_S = 5.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "quick.db"
    build_store(path)
    return path


@pytest.fixture
def probe(store: Path) -> Iterator[Probe]:
    with quick.open(f"sqlite:///{store}?latency=read:10&retry_limit=1") as db:
        yield Probe(db)


def _measure(probe: Probe, operation: Callable[[], Any]) -> tuple[Any, list[Try]]:
    with probe.watching() as tries:
        result = operation()
    return result, tries


def _assert_short(tries: list[Try], most_round_trips: int) -> None:
    assert tries, "the operation made no transaction"
    worst = max(tries, key=lambda attempt: attempt.round_trips)
    assert worst.round_trips <= most_round_trips, (
        f"a transaction made {worst.round_trips} read round trips "
        f"(at most {most_round_trips} expected): {worst}"
    )
    assert all(t.elapsed < LIFETIME_S for t in tries), f"a transaction passed 5 s: {tries}"
    assert all(t.outcome in ("committed", "open") for t in tries), tries


# -- quick/inspection.py ---------------------------------------------------------------------


def test_read_queues_pages_every_queue_in_short_transactions(probe: Probe) -> None:
    listing, tries = _measure(probe, lambda: inspection.read_all_queues(probe))
    assert len(listing.items) == QUEUES + 1
    assert listing.items[0]["counts"]["ready"] == 130  # "deep" sorts first
    _assert_short(tries, 2)


def test_list_queues_reads_every_counter_in_one_round_trip(probe: Probe) -> None:
    rows, tries = _measure(probe, lambda: quick.list_queues(probe, limit=1000))
    assert len(rows) == QUEUES + 1
    deep = next(row for row in rows if row["queue"] == "deep")
    assert deep["counts"] == {"scheduled": 0, "ready": 130, "leased": 0, "dead": 20}
    _assert_short(tries, 2)


def test_list_jobs_reads_the_job_records_in_one_round_trip(probe: Probe) -> None:
    jobs, tries = _measure(probe, lambda: quick.list_jobs(probe, "deep", limit=100))
    assert len(jobs) == 100
    _assert_short(tries, 3)


def test_dead_letter_listing_is_one_range_read(probe: Probe) -> None:
    listing, tries = _measure(probe, lambda: inspection.read_dead(probe, None))
    assert len(listing.items) == 20
    _assert_short(tries, 1)


def test_dashboard_overview_stays_short_per_transaction(probe: Probe) -> None:
    pytest.importorskip("flask", reason="the dashboard extra is not installed")
    from quick.dashboard.reads import read_overview

    view, tries = _measure(probe, lambda: read_overview(probe, quick.jobs.now_ms()))
    assert len(view.rows) == 200
    assert view.rows[0].queue == "deep"
    assert view.rows[0].oldest_ready_ms is not None
    # The overview's own snapshot, then one short transaction per queue's skip scan
    # (at most one range read per priority present, and one for due scheduled jobs).
    _assert_short(tries, 34)
    assert tries[0].round_trips <= 3


# -- quick/cron.py ---------------------------------------------------------------------------


def test_schedule_listing_is_short(probe: Probe) -> None:
    listing, tries = _measure(probe, lambda: inspection.read_schedules(probe))
    assert len(listing.items) == SCHEDULES
    _assert_short(tries, 2)


def test_cron_activation_of_hundreds_of_due_schedules_is_short(probe: Probe) -> None:
    later = quick.jobs.now_ms() + 3_600_000
    fired, tries = _measure(probe, lambda: quick.activate_due(probe, now=later))
    assert len(fired) == SCHEDULES
    _assert_short(tries, 6)


# -- workflow ------------------------------------------------------------------------------


def test_list_runs_reads_the_index_in_pages(probe: Probe) -> None:
    runs, tries = _measure(probe, lambda: workflow.list_runs(probe, limit=RUNS + 100))
    assert len(runs) >= RUNS
    assert [r.created_ms for r in runs] == sorted((r.created_ms for r in runs), reverse=True)
    _assert_short(tries, 6)  # a range read per status reached, then the records at once
    assert len(tries) > 1, f"{RUNS} runs read in one transaction"


def test_run_page_reads_its_records_in_one_round_trip(probe: Probe) -> None:
    from workflow.views import page_runs

    page, tries = _measure(probe, lambda: page_runs(probe, limit=50))
    assert len(page.runs) == 50
    _assert_short(tries, 6)  # a range read per status reached, then the records at once


def test_inspect_and_explain_a_wide_run_are_short(store: Path, probe: Probe) -> None:
    run_id = start_fan(store, "fan-inspect")
    run_all(probe, "fan-inspect")
    view, tries = _measure(probe, lambda: workflow.inspect_run(probe, run_id))
    assert view.steps["b0"].status == "scheduled"
    _assert_short(tries, 2)
    _, tries = _measure(probe, lambda: workflow.explain_run(probe, run_id))
    _assert_short(tries, 2)


def test_settling_the_step_that_fans_out_is_short(store: Path, probe: Probe) -> None:
    run_id = start_fan(store, "fan-out")
    (root,) = quick.claim(probe, "fan-out", "w")
    outcome, tries = _measure(probe, lambda: quick.run_claim(probe, app(), root))
    assert outcome == quick.Outcome.COMPLETED
    assert workflow.inspect_run(probe, run_id).steps["b7"].status == "scheduled"
    _assert_short(tries, 12)


def test_settling_the_last_branch_of_a_join_is_short(store: Path, probe: Probe) -> None:
    run_id = start_fan(store, "fan-in")
    run_all(probe, "fan-in")  # a
    branches = quick.claim(probe, "fan-in", "w", limit=FAN)
    assert len(branches) == FAN
    for claim in branches[:-1]:
        quick.run_claim(probe, app(), claim)
    outcome, tries = _measure(probe, lambda: quick.run_claim(probe, app(), branches[-1]))
    assert outcome == quick.Outcome.COMPLETED
    assert workflow.inspect_run(probe, run_id).steps["c"].status == "scheduled"
    _assert_short(tries, 12)


def test_steering_a_wide_run_is_short(store: Path, probe: Probe) -> None:
    run_id = start_fan(store, "fan-steer")
    run_all(probe, "fan-steer")  # a; sixty branches queued
    _, tries = _measure(probe, lambda: workflow.pause_run(probe, run_id))
    assert workflow.inspect_run(probe, run_id).status == "paused"
    _assert_short(tries, 6)
    _, tries = _measure(probe, lambda: workflow.resume_run(probe, run_id))
    assert workflow.inspect_run(probe, run_id).steps["b9"].status == "scheduled"
    _assert_short(tries, 6)
    _, tries = _measure(probe, lambda: workflow.cancel_run(probe, run_id))
    view = workflow.inspect_run(probe, run_id)
    assert view.status == "cancelled"
    assert view.steps["b9"].status == "cancelled"
    _assert_short(tries, 6)


def test_failing_and_retrying_a_wide_run_are_short(store: Path, probe: Probe) -> None:
    run_id = start_fan(store, "fan-fail")
    run_all(probe, "fan-fail")  # a
    first = quick.claim(probe, "fan-fail", "w")[0]
    step = (first.extension or {})["sk"]
    outcome, tries = _measure(probe, lambda: quick.run_claim(probe, app({step}), first))
    assert outcome == quick.Outcome.FAILED
    view = workflow.inspect_run(probe, run_id)
    assert view.status == "failed"
    assert view.steps["c"].status == "skipped"
    _assert_short(tries, 12)
    _, tries = _measure(probe, lambda: workflow.retry_run(probe, run_id))
    assert workflow.inspect_run(probe, run_id).steps[step].status == "scheduled"
    _assert_short(tries, 6)


def test_claiming_and_settling_a_batch_of_steps_reads_their_records_at_once(
    store: Path, probe: Probe
) -> None:
    # A worker claims and settles steps of many runs together; each step's hooks read
    # its run, its step and its successors. Those reads are made for the whole batch at
    # once, so neither transaction's round trips grow with the batch.
    pair = workflow.Workflow("pair").step("p", topic="work").step("q", topic="work", after=["p"])
    with quick.open(f"sqlite:///{store}") as db:
        runs = [workflow.start_run(db, pair, i, queue_id="batch") for i in range(FAN)]
    claims, tries = _measure(probe, lambda: quick.claim(probe, "batch", "w", limit=FAN))
    assert len(claims) == FAN
    _assert_short(tries, 8)  # was 67: two per step
    attempts = [run_attempt(probe, claim, job_config(app(), claim)) for claim in claims]
    done = [attempt for attempt in attempts if isinstance(attempt, Attempt)]
    outcomes, tries = _measure(probe, lambda: settle_batch(probe, done))
    assert outcomes == [quick.Outcome.COMPLETED] * FAN
    assert len(tries) == 1
    _assert_short(tries, 4)  # was about two per step
    view = workflow.inspect_run(probe, runs[-1])
    assert (view.steps["p"].status, view.steps["q"].status) == ("succeeded", "scheduled")
