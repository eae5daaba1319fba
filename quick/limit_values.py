"""The values of a limit, shared by per-queue limits (:mod:`quick.limits`) and keyed
limits (:mod:`quick.key_limits`): the ranges a limit may take, their checks, and the
token bucket a rate is kept in."""

from __future__ import annotations

import math
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.protocol import Transaction
from quick.errors import InvalidArgument

__all__ = [
    "BURST_SECONDS",
    "MAX_RUNNING",
    "MIN_PER_SECOND",
    "MAX_PER_SECOND",
    "FULL_RETRY_MS",
    "check_running",
    "check_rate",
    "refill",
    "decode_bucket",
    "decode_values",
    "store_values",
]

#: A rate-limited queue may start this many seconds' worth of jobs at once after a
#: pause: enough that a claim every pointer deferral keeps up with the rate, little
#: enough that the rate holds over any second.
BURST_SECONDS = 0.25
#: The most jobs of one queue a limit lets run at once: more than any fleet runs, and far
#: within what a claim counts in (a claim's room is at most 2**30).
MAX_RUNNING = 1_000_000
#: The slowest rate a limit may set: one job a day. A slower one (1e-300, say) would freeze
#: the queue for longer than anyone means, and is more likely a typo than a wish.
MIN_PER_SECOND = 1 / 86_400
#: The fastest rate a limit may set: far above what one queue can start, so a limit this
#: high is no limit, yet its bucket's burst stays a number a claim can count.
MAX_PER_SECOND = 1_000_000
#: How long a queue at its running cap stays out of scanners' sight: slots free when
#: jobs finish, which nothing announces, so this bounds the delay before they are reused.
FULL_RETRY_MS = 100


def _shown(value: int | float) -> str:
    """A number for an error message: a huge integer by its size (its digits could be
    thousands long, too many even for ``str()``)."""
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_running(value: Any) -> int | None:
    """``max_running`` checked: None, or a whole number 1 to :data:`MAX_RUNNING`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("max_running", f"must be a whole number, not {value!r}")
    if not 1 <= value <= MAX_RUNNING:
        raise InvalidArgument("max_running", f"must be 1 to {MAX_RUNNING:,}, not {_shown(value)}")
    return value


def check_rate(value: Any) -> float | None:
    """``max_per_second`` checked: None, or :data:`MIN_PER_SECOND` to :data:`MAX_PER_SECOND`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument("max_per_second", f"must be a number, not {value!r}")
    # Compared before float(): an int too large for a float must not raise OverflowError.
    if not MIN_PER_SECOND <= value <= MAX_PER_SECOND:  # NaN fails both comparisons
        raise InvalidArgument(
            "max_per_second",
            f"must be 1/86400 (one job a day) to {MAX_PER_SECOND:,}, not {_shown(value)}",
        )
    return float(value)


def refill(data: bytes | None, rate: float, now: int) -> float:
    """The tokens of a bucket stored as ``data`` (None: a full one), refilled up to ``now``."""
    burst = max(1.0, rate * BURST_SECONDS)
    if data is None:
        return burst
    try:
        tokens, at = decode_bucket(data)
    except (ValueError, TypeError):  # CorruptValue is a ValueError
        return burst  # an unreadable bucket starts full again
    return min(burst, tokens + max(0, now - at) * rate / 1000)


def decode_bucket(data: bytes) -> tuple[float, int]:
    """A rate bucket stored as ``data``: (tokens, last refill time in ms).

    Raises:
        CorruptValue: ``data`` is not a bucket: not a map of a finite number of tokens
            (``tk``) and a whole-millisecond time (``at``).
    """
    record = unpack_value(data)
    tokens = record.get("tk") if isinstance(record, dict) else None
    at = record.get("at") if isinstance(record, dict) else None
    if (
        not isinstance(tokens, int | float)
        or isinstance(tokens, bool)
        or not math.isfinite(tokens)
        or type(at) is not int
    ):
        raise CorruptValue(f"rate bucket of the wrong shape: {record!r}")
    return float(tokens), at


def decode_values(data: bytes, what: str) -> tuple[int | None, float | None]:
    """``(max_running, max_per_second)`` of the limits record stored as ``data`` (``what``
    names the record kind in errors).

    Raises:
        CorruptValue: ``data`` is not a limits record (or holds a limit out of range).
    """
    record = unpack_value(data)
    if not isinstance(record, dict) or set(record) - {"mr", "mps"}:
        raise CorruptValue(f"{what} record of the wrong shape: {record!r}")
    try:
        return check_running(record.get("mr")), check_rate(record.get("mps"))
    except InvalidArgument as error:
        raise CorruptValue(f"{what} record: {error}") from None


def store_values(
    tr: Transaction,
    key: bytes,
    bucket: bytes,
    max_running: int | None,
    max_per_second: float | None,
) -> None:
    """Write a limits record at ``key`` (both None: delete it); a rate removed takes its
    token bucket at ``bucket`` with it."""
    if max_running is None and max_per_second is None:
        tr.clear(key)
    else:
        tr.set(key, pack_value({"mr": max_running, "mps": max_per_second}))
    if max_per_second is None:
        tr.clear(bucket)
