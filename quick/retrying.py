"""The retry policy: when, if ever, a failed attempt runs again. Pure: no store, no clock.

One place decides both halves of a retry, for plain jobs and job extensions alike:

* the **attempt limit**: the job's own ``max_attempts`` (set at enqueue), else the
  handler's, else :data:`DEFAULT_MAX_ATTEMPTS`;
* the **delay** after failed attempt ``n``: the handler's ``backoff`` function if it
  has one, else capped exponential backoff with equal jitter,
  ``min(cap, base * 2**(n-1))``, half of it fixed and half random.

The random source is a parameter, so tests pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quick.app import JobConfig

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_BASE_DELAY_MS",
    "DEFAULT_MAX_DELAY_MS",
    "RetryDecision",
    "attempt_limit",
    "backoff_ms",
    "retry_delay_ms",
    "decide",
]

#: Attempts a job gets when neither the enqueue nor the handler says otherwise.
DEFAULT_MAX_ATTEMPTS = 5
#: The first retry's delay ceiling under the default backoff.
DEFAULT_BASE_DELAY_MS = 1000
#: The longest delay the default backoff waits.
DEFAULT_MAX_DELAY_MS = 60_000

Rng = Callable[[int, int], int]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What happens after a failed attempt: retry after ``delay_ms``, or stop (None)."""

    delay_ms: int | None
    max_attempts: int

    @property
    def final(self) -> bool:
        return self.delay_ms is None


def attempt_limit(job_max: int | None, handler_max: int | None = None) -> int:
    """The attempts a job gets: its own limit, else its handler's, else the default."""
    return job_max or handler_max or DEFAULT_MAX_ATTEMPTS


def backoff_ms(
    attempt: int,
    base_delay_ms: int = DEFAULT_BASE_DELAY_MS,
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
    rng: Rng = random.randint,
) -> int:
    """Capped exponential backoff with equal jitter: the delay after failed ``attempt``."""
    ceiling = int(min(max_delay_ms, base_delay_ms * 2 ** max(0, attempt - 1)))
    half = ceiling // 2
    return half + rng(0, ceiling - half)


def retry_delay_ms(config: JobConfig | None, attempt: int, rng: Rng = random.randint) -> int:
    """The delay before the retry of failed ``attempt`` under ``config``'s backoff."""
    if config is not None:
        fixed = config.retry_delay_ms(attempt)
        if fixed is not None:
            return fixed
        return backoff_ms(attempt, *config.backoff_bounds_ms(), rng=rng)
    return backoff_ms(attempt, rng=rng)


def decide(
    *,
    attempt: int,
    job_max: int | None,
    config: JobConfig | None,
    rng: Rng = random.randint,
) -> RetryDecision:
    """Retry or stop after failed ``attempt`` (1-based) of a job run under ``config``."""
    limit = attempt_limit(job_max, config.max_attempts if config is not None else None)
    if attempt >= limit:
        return RetryDecision(None, limit)
    return RetryDecision(retry_delay_ms(config, attempt, rng), limit)
