"""The retry policy (``quick.retrying``) as pure functions: the attempt limit, the capped
exponential backoff with equal jitter, and a handler's own backoff. The random source is
pinned, so every delay is exact. (Whether a failed attempt was the last is the settlement
table's to say: ``tests/unit/test_settlement.py``.)"""

from __future__ import annotations

import random

import pytest

from quick.retrying import (
    DEFAULT_BASE_DELAY_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_DELAY_MS,
    attempt_limit,
    backoff_ms,
    retry_delay_ms,
)


def lowest(low: int, high: int) -> int:
    """A pinned rng: always the bottom of the range."""
    return low


def highest(low: int, high: int) -> int:
    """A pinned rng: always the top of the range."""
    return high


def test_retry_attempt_limit_prefers_the_job_then_the_handler_then_the_default() -> None:
    assert attempt_limit(3, 7) == 3
    assert attempt_limit(None, 7) == 7
    assert attempt_limit(None, None) == DEFAULT_MAX_ATTEMPTS
    assert attempt_limit(None) == DEFAULT_MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (6, 32_000), (7, 60_000), (30, 60_000)],
)
def test_retry_backoff_doubles_to_its_cap_with_equal_jitter(attempt: int, ceiling: int) -> None:
    assert backoff_ms(attempt, rng=lowest) == ceiling // 2
    assert backoff_ms(attempt, rng=highest) == ceiling


def test_retry_backoff_treats_attempt_zero_as_the_first() -> None:
    assert backoff_ms(0, rng=highest) == backoff_ms(1, rng=highest) == DEFAULT_BASE_DELAY_MS


def test_retry_backoff_asks_the_rng_for_the_jittered_half_only() -> None:
    asked: list[tuple[int, int]] = []

    def recording(low: int, high: int) -> int:
        asked.append((low, high))
        return low + 1

    assert backoff_ms(3, base_delay_ms=100, max_delay_ms=10_000, rng=recording) == 201
    assert asked == [(0, 200)]


def test_retry_backoff_with_a_seeded_rng_is_reproducible_and_in_bounds() -> None:
    first = random.Random(1234)
    second = random.Random(1234)
    delays = [backoff_ms(n, rng=first.randint) for n in range(1, 12)]
    assert delays == [backoff_ms(n, rng=second.randint) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(DEFAULT_MAX_DELAY_MS, DEFAULT_BASE_DELAY_MS * 2 ** (n - 1))
        assert ceiling - ceiling // 2 <= delay <= ceiling


def test_retry_delay_uses_the_handlers_backoff_function() -> None:
    seen: list[int] = []

    def backoff(attempt: int) -> float:
        seen.append(attempt)
        return 2.5

    assert retry_delay_ms(backoff, 4, rng=highest) == 2500
    assert seen == [4]


def test_retry_delay_of_a_negative_backoff_function_is_zero() -> None:
    assert retry_delay_ms(lambda attempt: -3.0, 1, rng=highest) == 0


def test_retry_delay_uses_the_handlers_backoff_bounds() -> None:
    bounded = (0.1, 0.3)
    assert retry_delay_ms(bounded, 1, rng=highest) == 100
    assert retry_delay_ms(bounded, 2, rng=highest) == 200
    assert retry_delay_ms(bounded, 3, rng=highest) == 300
    assert retry_delay_ms(bounded, 9, rng=lowest) == 150


def test_retry_delay_bounds_are_at_least_a_millisecond() -> None:
    assert retry_delay_ms((0.0001, 0.0001), 5, rng=highest) == 1


def test_retry_delay_without_a_backoff_is_the_default() -> None:
    assert retry_delay_ms(None, 2, rng=highest) == 2 * DEFAULT_BASE_DELAY_MS
    assert retry_delay_ms(None, 1, rng=lowest) == DEFAULT_BASE_DELAY_MS // 2
