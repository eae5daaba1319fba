"""How much a consumer claims and how many lanes it runs: :mod:`consumer.sizing`, pure."""

from __future__ import annotations

from typing import Any

from consumer.sizing import ClaimSize, backlog_cap, claim_size, lanes_wanted, wait_budget


def _size(**given: Any) -> ClaimSize:
    settings: dict[str, Any] = {
        "batch_size": 200,
        "concurrency": 8,
        "running": 0,
        "stalled": 0,
        "waiting": 0,
        "handler_seconds": None,
    }
    settings.update(given)
    return claim_size(**settings)


def test_claim_size_before_any_handler_finished_is_the_idle_slots() -> None:
    assert _size() == ClaimSize(8, 0)
    assert _size(running=3, waiting=2) == ClaimSize(3, 0)
    assert _size(running=8) == ClaimSize(0, 0)
    assert _size(batch_size=5) == ClaimSize(5, 0)


def test_claim_size_of_fast_handlers_is_a_batch_claimed_again_at_half() -> None:
    # 1 ms handlers: 100 jobs per slot per claim horizon, capped by the batch size.
    assert _size(handler_seconds=0.001) == ClaimSize(200, 100)
    assert _size(handler_seconds=0.001, waiting=100) == ClaimSize(200, 100)
    assert _size(handler_seconds=0.001, waiting=101) == ClaimSize(0, 100)
    assert _size(handler_seconds=0.05) == ClaimSize(16, 8)


def test_backlog_cap_halves_and_holds_claims_while_the_oldest_waited_unrenewed() -> None:
    # A 2-second lease: the keeper renews at a third; 1,300 ms left means it waited 700 ms.
    assert backlog_cap(200, 1_300, 2_000, least=4, most=200) == (100, False)
    assert backlog_cap(6, 100, 2_000, least=4, most=200) == (4, False)


def test_backlog_cap_grows_back_while_waiting_claims_are_fresh() -> None:
    assert backlog_cap(100, None, 2_000, least=4, most=200) == (125, True)
    assert backlog_cap(4, 1_900, 2_000, least=4, most=200) == (5, True)
    assert backlog_cap(190, None, 2_000, least=4, most=200) == (200, True)
    assert backlog_cap(100, 1_500, 2_000, least=4, most=200) == (100, True)  # in between: kept


def test_wait_budget_counts_the_recording_in_each_jobs_cost() -> None:
    # 2 s leases, 4 slots: claims should start within 667 ms. A 1 ms handler whose slice
    # of 20 is recorded in 150 ms costs its slot 8.5 ms: 313 start in time; at 600 ms a
    # slice, 31 ms a job: 86.
    assert wait_budget(lease_ms=2_000, job_seconds=0.0085, concurrency=4) == 313
    assert wait_budget(lease_ms=2_000, job_seconds=0.031, concurrency=4) == 86
    # The default 30 s lease: no bound below a batch unless a job costs 200 ms.
    assert wait_budget(lease_ms=30_000, job_seconds=0.0085, concurrency=4) == 4705
    assert wait_budget(lease_ms=30_000, job_seconds=0.2, concurrency=4) == 200


def test_wait_budget_is_at_least_a_claim_per_slot_and_unknown_before_any_job() -> None:
    assert wait_budget(lease_ms=2_000, job_seconds=5.0, concurrency=4) == 4
    assert wait_budget(lease_ms=2_000, job_seconds=None, concurrency=4) is None
    assert wait_budget(lease_ms=2_000, job_seconds=0.0, concurrency=4) is None


def test_claim_size_keeps_the_claims_waiting_within_the_budget() -> None:
    # Fast handlers would bring a batch of 200 at 100 left; 120 may wait at most.
    assert _size(handler_seconds=0.001, most_waiting=120) == ClaimSize(120, 60)
    assert _size(handler_seconds=0.001, most_waiting=120, waiting=60) == ClaimSize(60, 60)
    assert _size(handler_seconds=0.001, most_waiting=120, waiting=61) == ClaimSize(0, 60)
    assert _size(handler_seconds=0.001, most_waiting=500) == ClaimSize(200, 100)
    # Slow or unknown handlers bring what the idle slots start now, as before.
    assert _size(handler_seconds=3.0, most_waiting=2) == ClaimSize(8, 0)
    assert _size(most_waiting=2) == ClaimSize(8, 0)


def test_claim_size_of_fast_handlers_leaves_out_stalled_slots() -> None:
    assert _size(handler_seconds=0.05, running=8, stalled=6) == ClaimSize(4, 2)
    assert _size(handler_seconds=0.001, running=8, stalled=8) == ClaimSize(0, 0)


def test_claim_size_of_slow_handlers_is_what_idle_slots_start_now() -> None:
    assert _size(handler_seconds=3.0) == ClaimSize(8, 0)
    assert _size(handler_seconds=3.0, running=7) == ClaimSize(1, 0)
    assert _size(handler_seconds=3.0, running=7, waiting=1) == ClaimSize(0, 0)
    assert _size(handler_seconds=3.0, running=8, stalled=8) == ClaimSize(0, 0)


def test_lanes_wanted_one_per_claim_until_the_time_is_known_or_while_a_lane_stalls() -> None:
    assert lanes_wanted(0, None) == 0
    assert lanes_wanted(5, None) == 5
    assert lanes_wanted(200, 0.00002) == 1
    assert lanes_wanted(200, 0.001) == 10
    assert lanes_wanted(5, 0.001, stalled=1) == 5
