"""Checks on everything a caller hands the queue, run before any write.

Each check raises :class:`~quick.errors.InvalidArgument` (a ValueError) or
:class:`~quick.errors.InvalidPayload` (a TypeError) naming the field.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from quick.errors import InvalidArgument

__all__ = [
    "MAX_NAME_BYTES",
    "check_name",
    "check_priority",
    "check_max_attempts",
    "visibility_ms",
    "check_positive_ms",
]

MAX_NAME_BYTES = 256


def check_name(field: str, value: Any, *, optional: bool = False) -> str | None:
    """A non-empty string of at most 256 UTF-8 bytes (queue id, topic, job id, key)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidArgument(field, "must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(field, "must be valid Unicode (it holds a lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise InvalidArgument(field, f"is {size} bytes; the limit is {MAX_NAME_BYTES}")
    return value


def check_priority(value: Any) -> int:
    """An integer; lower runs first."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("priority", f"must be an integer, not {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise InvalidArgument("priority", "must fit in 64 bits")
    return value


def check_max_attempts(value: Any) -> int | None:
    """None (the default policy) or an integer >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("max_attempts", f"must be an integer, not {type(value).__name__}")
    if value < 1:
        raise InvalidArgument("max_attempts", f"must be at least 1, not {value}")
    return value


def check_positive_ms(field: str, value: Any) -> int:
    """A positive integer number of milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(field, f"must be a positive integer of milliseconds, not {value!r}")
    return value


def visibility_ms(delay: Any, at: Any, now_ms: int) -> int:
    """When a job becomes visible: ``delay`` (seconds or timedelta) or ``at`` (aware datetime)."""
    if delay is not None and at is not None:
        raise InvalidArgument("delay", "give delay or at, not both")
    if at is not None:
        if not isinstance(at, dt.datetime):
            raise InvalidArgument("at", f"must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
            raise InvalidArgument("at", "must be timezone-aware (a naive datetime is ambiguous)")
        return int(at.timestamp() * 1000)
    if delay is None:
        return now_ms
    if isinstance(delay, dt.timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        kind = type(delay).__name__
        raise InvalidArgument("delay", f"must be seconds or a timedelta, not {kind}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidArgument("delay", "must be a finite number of seconds")
    if seconds < 0:
        raise InvalidArgument("delay", f"must not be negative, not {seconds}")
    return now_ms + round(seconds * 1000)


#: The longest delay quick accepts, in milliseconds (about 100 years): past it, times
#: overflow the engines' 64-bit integers.
MAX_DELAY_MS = 100 * 365 * 86_400_000


def check_claim(claim: Any) -> None:
    """A :class:`~quick.jobs.Claim` as handed out by a claim (TypeError otherwise)."""
    from quick.jobs import Claim

    if not isinstance(claim, Claim):
        raise TypeError(f"claim must be a Claim, not {type(claim).__name__}")


def check_delay_ms(field: str, value: Any) -> int:
    """A finite, non-negative delay in milliseconds no longer than :data:`MAX_DELAY_MS`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, not {value!r}")
    if not 0 <= value <= MAX_DELAY_MS:
        raise InvalidArgument(field, f"must be between 0 and {MAX_DELAY_MS}, not {value!r}")
    return int(value)
