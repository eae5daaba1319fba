"""Per-queue limits: how many jobs of a queue (a tenant) run at once across every
consumer, and how many start per second.

Theory of operation
-------------------
Limits live at ``("lim", queue)`` (``"*"``: the default of every queue without a record
of its own; a queue's own record replaces the default whole). They are enforced in the
claim transaction (:func:`quick.claiming.claim_jobs`, which ``claim`` and the
consumer's claim round share), so they hold across all consumers:

* **Running.** A job counts as running while it is leased; the queue's ``leased``
  counter (:mod:`quick.counters`) says how many are. A claim leases at most
  ``max_running - leased``. The counter is read as a snapshot (completions add to it
  all the time and must not conflict with claims); two claims of one queue still
  serialize, since both read its ready index and each writes what it leases. A
  crashed consumer's leases expire, are promoted back to ready by the next claim
  (which counts them out of ``leased``) and so give their slots back.
* **Rate.** A token bucket at ``("rate", queue)``: ``max_per_second`` tokens a second,
  holding at most :data:`BURST_SECONDS` worth (at least one), one token per job leased.
* **Cost.** With no limits stored anywhere, a claim round pays one range read of one
  row (``any limits?``), made once per transaction by a :class:`Limiter`. With limits,
  each queue visited costs one ``get_many`` of its record and the default, plus the
  counter and the bucket it needs.
* **Capped queues do not stall scanners.** A claim that leaves a queue at its cap with
  ready jobs waiting moves the queue's pointer a little later (:func:`wait_ms`: at
  most :data:`~quick.pointers.REWRITE_THRESHOLD_MS`, which keeps the pointer rule and
  spares producers a rewrite), so scanners skip it until a slot or a token is likely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import LIMITS, RATES, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick.counters import Tally, decode_count
from quick.errors import InvalidArgument
from quick.jobs import JobState
from quick.pointers import REWRITE_THRESHOLD_MS
from quick.validation import check_name

__all__ = [
    "DEFAULT_QUEUE",
    "BURST_SECONDS",
    "MAX_RUNNING",
    "MIN_PER_SECOND",
    "MAX_PER_SECOND",
    "FULL_RETRY_MS",
    "QueueLimits",
    "Limiter",
    "Gate",
    "set_queue_limits",
    "get_queue_limits",
    "decode_limits",
    "decode_bucket",
    "list_queue_limits",
]

#: The queue id whose limits apply to every queue without limits of its own.
DEFAULT_QUEUE = "*"
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


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    """The limits of one queue (or of ``"*"``, the default); None = no limit."""

    queue_id: str
    max_running: int | None = None
    max_per_second: float | None = None


def _shown(value: int | float) -> str:
    """A number for an error message: a huge integer by its size (its digits could be
    thousands long, too many even for ``str()``)."""
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_running(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("max_running", f"must be a whole number, not {value!r}")
    if not 1 <= value <= MAX_RUNNING:
        raise InvalidArgument("max_running", f"must be 1 to {MAX_RUNNING:,}, not {_shown(value)}")
    return value


def _check_rate(value: Any) -> float | None:
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


def _check_queue(queue_id: Any) -> str:
    if queue_id == DEFAULT_QUEUE:
        return DEFAULT_QUEUE
    queue = check_name("queue_id", queue_id)
    assert queue is not None
    return queue


def decode_limits(queue: str, data: bytes) -> QueueLimits:
    """The limits stored as ``data``.

    Raises:
        CorruptValue: ``data`` is not a limits record (or holds a limit out of range).
    """
    record = unpack_value(data)
    if not isinstance(record, dict) or set(record) - {"mr", "mps"}:
        raise CorruptValue(f"limits record of the wrong shape: {record!r}")
    try:
        return QueueLimits(
            queue_id=queue,
            max_running=_check_running(record.get("mr")),
            max_per_second=_check_rate(record.get("mps")),
        )
    except InvalidArgument as error:
        raise CorruptValue(f"limits record: {error}") from None


def _decode(queue: str, data: bytes) -> QueueLimits | None:
    """The stored limits, or None when the record does not decode to their shape (an
    untrusted record never raises out of a claim; ``quick limits list`` shows it gone)."""
    try:
        return decode_limits(queue, data)
    except (ValueError, TypeError):  # CorruptValue is a ValueError
        return None


@transactional
def _store(tr: Transaction, limits: QueueLimits) -> None:
    key = LIMITS.pack((limits.queue_id,))
    if limits.max_running is None and limits.max_per_second is None:
        tr.clear(key)
    else:
        tr.set(key, pack_value({"mr": limits.max_running, "mps": limits.max_per_second}))
    if limits.max_per_second is None:
        tr.clear(RATES.pack((limits.queue_id,)))


def set_queue_limits(
    db: Database | Transaction,
    queue_id: str,
    *,
    max_running: int | None = None,
    max_per_second: float | None = None,
) -> QueueLimits:
    """Cap how many jobs of ``queue_id`` run at once, across every consumer, and how many
    start per second. ``queue_id`` ``"*"`` sets the default of queues without their own
    limits; None removes a limit (both None: the queue's record is deleted).

    Raises:
        InvalidArgument: a limit that is not a number, or out of its range (``field``
            names it): ``max_running`` 1 to :data:`MAX_RUNNING`, ``max_per_second``
            :data:`MIN_PER_SECOND` (one job a day) to :data:`MAX_PER_SECOND`.
    """
    limits = QueueLimits(
        queue_id=_check_queue(queue_id),
        max_running=_check_running(max_running),
        max_per_second=_check_rate(max_per_second),
    )
    _store(db, limits)
    return limits


@transactional
def get_queue_limits(tr: Transaction, queue_id: str) -> QueueLimits | None:
    """The limits stored for ``queue_id`` itself (``"*"``: the default), or None."""
    queue = _check_queue(queue_id)
    data = tr.get(LIMITS.pack((queue,)))
    return None if data is None else _decode(queue, data)


@transactional
def list_queue_limits(tr: Transaction) -> list[QueueLimits]:
    """Every stored limit record, the default (``"*"``) among them, by queue id."""
    out = []
    for key, value in tr.get_range(*LIMITS.range()):
        (queue,) = LIMITS.unpack(key)
        limits = _decode(str(queue), value)
        if limits is not None:
            out.append(limits)
    return out


# -- in the claim transaction ----------------------------------------------------------------


class Gate:
    """One queue's limits in one claim: how many jobs it may lease (:attr:`room`), then
    :meth:`spend` charges the bucket and says how long the queue should wait."""

    __slots__ = ("queue", "limits", "now", "room", "_running", "_tokens")

    def __init__(self, tr: Transaction, queue: str, limits: QueueLimits, now: int, tally: Tally):
        self.queue = queue
        self.limits = limits
        self.now = now
        self.room = 1 << 30
        self._running = 0
        self._tokens = 0.0
        if limits.max_running is not None:
            data = tr.snapshot.get(queue_keys(queue).counter(JobState.LEASED.value))
            counted = decode_count(data) if data is not None and len(data) == 8 else 0
            self._running = max(0, counted + tally.pending(queue, JobState.LEASED))
            self.room = max(0, limits.max_running - self._running)
        if limits.max_per_second is not None:
            self._tokens = _refill(tr.get(RATES.pack((queue,))), limits.max_per_second, now)
            self.room = min(self.room, int(self._tokens))

    def spend(self, tr: Transaction, leased: int) -> int | None:
        """Charge ``leased`` jobs; the milliseconds the queue should then stay out of
        scanners' sight (None when it has room left)."""
        waits = []
        if (
            self.limits.max_running is not None
            and self._running + leased >= self.limits.max_running
        ):
            waits.append(FULL_RETRY_MS)
        rate = self.limits.max_per_second
        if rate is not None:
            left = self._tokens - leased
            if leased:
                tr.set(RATES.pack((self.queue,)), pack_value({"tk": left, "at": self.now}))
            if left < 1:
                waits.append(math.ceil((1 - left) * 1000 / rate))
        if not waits:
            return None
        return max(1, min(max(waits), REWRITE_THRESHOLD_MS))


def _refill(data: bytes | None, rate: float, now: int) -> float:
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


class Limiter:
    """The limits of one claim transaction: whether any exist is read once (one row of
    a range read), then each queue's :class:`Gate` on demand."""

    __slots__ = ("_any",)

    def __init__(self) -> None:
        self._any: bool | None = None

    def gate(self, tr: Transaction, queue: str, now: int, tally: Tally) -> Gate | None:
        """The gate of ``queue`` (None when no limits apply to it)."""
        if self._any is None:
            self._any = bool(tr.get_range(*LIMITS.range(), limit=1))
        if not self._any:
            return None
        own, default = tr.get_many([LIMITS.pack((queue,)), LIMITS.pack((DEFAULT_QUEUE,))])
        data, name = (own, queue) if own is not None else (default, DEFAULT_QUEUE)
        limits = None if data is None else _decode(name, data)
        return None if limits is None else Gate(tr, queue, limits, now, tally)
