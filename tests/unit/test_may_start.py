"""Whether a waiting claim may still start: :func:`consumer.lanes.may_start`, pure."""

from __future__ import annotations

from consumer.config import ConsumerConfig
from consumer.keeper import Held
from consumer.lanes import may_start
from quick.jobs import Claim

NOW = 1_700_000_000_000


def _held(lease_until_ms: int, *, lost: bool = False) -> Held:
    claim = Claim(
        queue_id="q",
        job_id="j",
        topic="t",
        payload=None,
        attempt=1,
        token="tok",
        owner="me",
        lease_until_ms=lease_until_ms,
    )
    held = Held(claim, None)
    held.lost = lost
    return held


def test_may_start_with_lease_left_beyond_the_margin() -> None:
    assert may_start(_held(NOW + 5_001), NOW, 5_000)


def test_may_start_refuses_a_lease_within_the_margin_or_past() -> None:
    assert not may_start(_held(NOW + 5_000), NOW, 5_000)
    assert not may_start(_held(NOW - 20_000), NOW, 5_000)


def test_may_start_refuses_a_claim_the_keeper_found_lost() -> None:
    assert not may_start(_held(NOW + 30_000, lost=True), NOW, 5_000)


def test_start_margin_is_a_sixth_of_the_lease() -> None:
    assert ConsumerConfig(lease_ms=30_000).start_margin_ms == 5_000
