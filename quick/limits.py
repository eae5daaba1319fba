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

from keyspace.codec import pack_value
from keyspace.layout import LIMITS, RATES, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick.counters import Tally, decode_count
from quick.jobs import JobState
from quick.key_limits import KeyGate
from quick.limit_values import (
    BURST_SECONDS,
    FULL_RETRY_MS,
    MAX_PER_SECOND,
    MAX_RUNNING,
    MIN_PER_SECOND,
    check_rate,
    check_running,
    decode_bucket,
    decode_values,
    refill,
    store_values,
)
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
    "check_running",
    "check_rate",
    "refill",
    "decode_bucket",
    "list_queue_limits",
]

#: The queue id whose limits apply to every queue without limits of its own.
DEFAULT_QUEUE = "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    """The limits of one queue (or of ``"*"``, the default); None = no limit."""

    queue_id: str
    max_running: int | None = None
    max_per_second: float | None = None


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
    max_running, max_per_second = decode_values(data, "limits")
    return QueueLimits(queue_id=queue, max_running=max_running, max_per_second=max_per_second)


def _decode(queue: str, data: bytes) -> QueueLimits | None:
    """The stored limits, or None when the record does not decode to their shape (an
    untrusted record never raises out of a claim; ``quick limits list`` shows it gone)."""
    try:
        return decode_limits(queue, data)
    except (ValueError, TypeError):  # CorruptValue is a ValueError
        return None


@transactional
def _store(tr: Transaction, limits: QueueLimits) -> None:
    key, bucket = LIMITS.pack((limits.queue_id,)), RATES.pack((limits.queue_id,))
    store_values(tr, key, bucket, limits.max_running, limits.max_per_second)


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
        max_running=check_running(max_running),
        max_per_second=check_rate(max_per_second),
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
            self._tokens = refill(tr.get(RATES.pack((queue,))), limits.max_per_second, now)
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


class Limiter:
    """The limits of one claim transaction: whether any exist is read once (one row of
    a range read), then each queue's :class:`Gate` on demand; keyed limits in
    :attr:`keys`."""

    __slots__ = ("_any", "_keys")

    def __init__(self) -> None:
        self._any: bool | None = None
        self._keys: KeyGate | None = None

    @property
    def keys(self) -> KeyGate:
        """The keyed limits (:mod:`quick.key_limits`) of this transaction, made on first use."""
        if self._keys is None:
            self._keys = KeyGate()
        return self._keys

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
