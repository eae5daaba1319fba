"""The retry policy: when, if ever, a failed attempt runs again. Pure: no store, no clock.

One place decides both halves of a retry, for plain jobs and job extensions alike:

* the **attempt limit**: the job's own ``max_attempts`` (set at enqueue), else the
  handler's, else :data:`DEFAULT_MAX_ATTEMPTS`;
* the **delay** after failed attempt ``n``: the handler's ``backoff`` function if it
  has one, else capped exponential backoff with equal jitter,
  ``min(cap, base * 2**(n-1))``, half of it fixed and half random.

The random source is a parameter, so tests pin it. Whether a failed attempt was the
last is the settlement table's to say (:mod:`quick.settlement`), from the limit here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_BASE_DELAY_MS",
    "DEFAULT_MAX_DELAY_MS",
    "Backoff",
    "attempt_limit",
    "backoff_ms",
    "retry_delay_ms",
]

#: Attempts a job gets when neither the enqueue nor the handler says otherwise.
DEFAULT_MAX_ATTEMPTS = 5
#: The first retry's delay ceiling under the default backoff.
DEFAULT_BASE_DELAY_MS = 1000
#: The longest delay the default backoff waits.
DEFAULT_MAX_DELAY_MS = 60_000

#: A handler's retry delays (``App.job(backoff=...)``): ``(base_seconds, max_seconds)``
#: for capped exponential backoff, or a function of the failed attempt giving seconds.
Backoff = tuple[float, float] | Callable[[int], float]

Rng = Callable[[int, int], int]


def attempt_limit(job_max: int | None, handler_max: int | None = None) -> int:
    """The attempts a job gets: its own limit, else its handler's, else the default.
    Whether a failed attempt was the last is decided by :func:`quick.settlement.decide`."""
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


def retry_delay_ms(backoff: Backoff | None, attempt: int, rng: Rng = random.randint) -> int:
    """The delay before the retry of failed ``attempt`` under a handler's ``backoff``
    (None: the default backoff)."""
    if callable(backoff):
        return max(0, round(backoff(attempt) * 1000))
    if isinstance(backoff, tuple):
        base, cap = backoff
        return backoff_ms(attempt, max(1, round(base * 1000)), max(1, round(cap * 1000)), rng)
    return backoff_ms(attempt, rng=rng)
