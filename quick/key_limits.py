"""Keyed limits: a named limit (``"stripe-api"``, ``"customer:42"``) shared by every job
that names it, across queues and topics.

Theory of operation
-------------------
A job names its limit keys at enqueue (``limit_keys=[...]``, stored on the record as
``lk``) or through its topic's registration (``@app.job(..., limit_keys=[...])``, merged
in by :meth:`quick.App.enqueue`). A key's limits live at ``("klim", key)`` with the same
fields and ranges as per-queue limits (:mod:`quick.limits`):

* **Running.** ``("krun", key)`` counts the leased jobs naming the key. It moves in the
  one writer of job records (:func:`moved`, called by :mod:`quick.records`), so it moves
  in the very transaction that leases a job, settles it, puts it back, or promotes its
  expired lease back to ready: a killed worker's slots come back when a claim promotes
  its expired leases. It is an atomic add (settlements never conflict with each other
  or with claims through it) and is cleared when it returns to zero.
* **Rate.** A token bucket at ``("krate", key)``, as a queue's (``max_per_second``
  tokens a second, at most :data:`~quick.limit_values.BURST_SECONDS` worth).
* **Exactness.** A claim reads the counter as a snapshot, which can only overstate the
  running jobs (a settlement committed meanwhile lowers it; nothing but a claim raises
  it). Claims that lease jobs of one limited key are serialized instead: each reads the
  key's limits record serializably and, when it leases a job of that key, adds a write
  conflict on the record, so of two concurrent claims of one key the second retries and
  sees the first one's jobs. This is the per-queue mechanism's conflict behaviour (two
  claims of one queue serialize on its ready index), lifted from a queue to a key.
* **Waiting.** A ready job some of whose keys are exhausted is *parked*: moved to the
  scheduled index a little later (:func:`park_ms`), its attempt untouched. It is not
  failed, and the claim goes on with the next ready jobs, so jobs of the same queue
  that do not share the key still run. A parked job comes back to the ready index when
  its time is due, behind jobs that became visible before it (within a priority, ready
  jobs run by visibility time).
* **Cost.** A job without limit keys costs nothing more. A claim meeting a job with keys
  reads, once per transaction and key, the key's limits, counter and bucket in one
  ``get_many`` (the counter as a snapshot; read conflicts added on the others).
"""

from __future__ import annotations

import functools
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from keyspace.codec import pack_value
from keyspace.layout import KEY_LIMITS, KEY_RATES, KEY_RUNNING
from keyspace.protocol import Database, ReadView, Transaction
from keyspace.retry import transactional
from quick.counters import Tally, add_count, decode_count
from quick.errors import InvalidArgument
from quick.jobs import Job, JobState
from quick.limit_values import (
    FULL_RETRY_MS,
    check_rate,
    check_running,
    decode_values,
    refill,
    store_values,
)
from quick.validation import check_name

__all__ = [
    "MAX_LIMIT_KEYS",
    "MAX_PARK_MS",
    "KeyLimits",
    "set_key_limits",
    "clear_key_limits",
    "get_key_limits",
    "list_key_limits",
    "key_running",
    "running_key",
    "check_limit_keys",
    "decode_key_limits",
    "moved",
    "park_ms",
    "KeyGate",
]

#: The most limit keys one job may name: each costs its claim a read.
MAX_LIMIT_KEYS = 8
#: The longest a parked job waits before its claim looks again: the running cap's slots
#: free when jobs finish, which nothing announces, so this bounds the delay to reuse one.
MAX_PARK_MS = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLimits:
    """The limits of one limit key; None = no limit. ``running`` is how many jobs naming
    the key are leased (filled in by :func:`list_key_limits`)."""

    key: str
    max_running: int | None = None
    max_per_second: float | None = None
    running: int = 0


def _check_key(field: str, value: Any) -> str:
    key = check_name(field, value)
    assert key is not None
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        raise InvalidArgument(field, f"must not hold control characters: {key!r}")
    return key


def check_limit_keys(value: Any) -> tuple[str, ...]:
    """``limit_keys`` as stored: a tuple of distinct key names, in the order given.

    Raises:
        InvalidArgument: not a list or tuple of names, or more than :data:`MAX_LIMIT_KEYS`.
    """
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidArgument("limit_keys", f"must be a list of key names, not {value!r}")
    keys = tuple(dict.fromkeys(_check_key("limit_keys", item) for item in value))
    if len(keys) > MAX_LIMIT_KEYS:
        raise InvalidArgument(
            "limit_keys", f"names {len(keys)} keys; a job may name at most {MAX_LIMIT_KEYS}"
        )
    return keys


def decode_key_limits(key: str, data: bytes) -> KeyLimits:
    """The key limits stored as ``data``.

    Raises:
        CorruptValue: ``data`` is not a limits record (or holds a limit out of range).
    """
    max_running, max_per_second = decode_values(data, "key limits")
    return KeyLimits(key=key, max_running=max_running, max_per_second=max_per_second)


def _decode(key: str, data: bytes | None) -> KeyLimits | None:
    """The stored limits, or None (absent, or not decoding: an untrusted record never
    raises out of a claim, and ``quick limits list`` shows it gone)."""
    if data is None:
        return None
    try:
        limits = decode_key_limits(key, data)
    except (ValueError, TypeError):  # CorruptValue is a ValueError
        return None
    return None if limits.max_running is None and limits.max_per_second is None else limits


@transactional
def _store(tr: Transaction, limits: KeyLimits) -> None:
    key, bucket = KEY_LIMITS.pack((limits.key,)), KEY_RATES.pack((limits.key,))
    store_values(tr, key, bucket, limits.max_running, limits.max_per_second)


def set_key_limits(
    db: Database | Transaction,
    key: str,
    *,
    max_running: int | None = None,
    max_per_second: float | None = None,
) -> KeyLimits:
    """Cap how many jobs naming limit key ``key`` run at once, across every queue and
    consumer, and how many start per second. None removes a limit (both None: the key's
    record is deleted, as :func:`clear_key_limits` does).

    Raises:
        InvalidArgument: a bad key name, or a limit that is not a number or is out of its
            range (``field`` names it): ``max_running`` 1 to
            :data:`~quick.limit_values.MAX_RUNNING`, ``max_per_second`` one job a day to
            :data:`~quick.limit_values.MAX_PER_SECOND`. Nothing is written.
    """
    limits = KeyLimits(
        key=_check_key("key", key),
        max_running=check_running(max_running),
        max_per_second=check_rate(max_per_second),
    )
    _store(db, limits)
    return limits


def clear_key_limits(db: Database | Transaction, key: str) -> None:
    """Remove the limits of ``key``: its jobs run unlimited (their running count is kept).

    Raises:
        InvalidArgument: a bad key name.
    """
    _store(db, KeyLimits(key=_check_key("key", key)))


@functools.lru_cache(maxsize=4096)
def running_key(key: str) -> bytes:
    """The key of ``key``'s running counter (cached: it is packed for every job moved)."""
    return KEY_RUNNING.pack((key,))


def _count(data: bytes | None) -> int:
    """A running counter's value (absent or not 8 bytes: zero)."""
    return max(0, decode_count(data)) if data is not None and len(data) == 8 else 0


def _running(view: ReadView, key: str) -> int:
    return _count(view.get(running_key(key)))


@transactional
def get_key_limits(tr: Transaction, key: str) -> KeyLimits | None:
    """The limits stored for ``key`` with its running count, or None."""
    name = _check_key("key", key)
    limits = _decode(name, tr.get(KEY_LIMITS.pack((name,))))
    if limits is None:
        return None
    return KeyLimits(
        key=name,
        max_running=limits.max_running,
        max_per_second=limits.max_per_second,
        running=_running(tr.snapshot, name),
    )


@transactional
def key_running(tr: Transaction, key: str) -> int:
    """How many jobs naming ``key`` are leased now (counted whether or not it has limits)."""
    return _running(tr.snapshot, _check_key("key", key))


@transactional
def list_key_limits(tr: Transaction) -> list[KeyLimits]:
    """Every stored key limit, by key, each with its running count."""
    found = []
    for raw, value in tr.get_range(*KEY_LIMITS.range()):
        (key,) = KEY_LIMITS.unpack(raw)
        limits = _decode(str(key), value)
        if limits is not None:
            found.append(limits)
    counts = tr.get_many([running_key(limits.key) for limits in found], snapshot=True)
    return [
        KeyLimits(
            key=limits.key,
            max_running=limits.max_running,
            max_per_second=limits.max_per_second,
            running=_count(data),
        )
        for limits, data in zip(found, counts, strict=True)
    ]


# -- in the writer of job records -------------------------------------------------------------


def moved(
    tr: Transaction, job: Job, old: JobState | None, new: JobState | None, tally: Tally | None
) -> None:
    """Count ``job`` (which names limit keys) into or out of its keys' running counters
    as it moves from state ``old`` to ``new`` (None: absent), through ``tally`` when the
    caller batches counters. Called by the one writer of job records, so the count moves
    in the transaction that moves the job; a key nothing runs under leaves no counter."""
    was, now = old is JobState.LEASED, new is JobState.LEASED
    if was == now:
        return
    delta = 1 if now else -1
    for key in job.limit_keys:
        counter = running_key(key)
        if tally is None:
            add_count(tr, counter, delta, drop_zero=True)
        else:
            tally.add(counter, delta, drop_zero=True)


# -- in the claim transaction ------------------------------------------------------------------


def park_ms(waiting: int) -> int:
    """How long the ``waiting``-th job parked behind a full running cap in one claim waits:
    later ones a little longer, so a long line is not rewritten on every visit."""
    return min(MAX_PARK_MS, FULL_RETRY_MS * max(1, waiting))


class _Key:
    """One limited key in one claim transaction: what is left of its cap and bucket."""

    __slots__ = ("key", "limits", "running", "tokens", "parked", "taken")

    def __init__(self, limits: KeyLimits, running: int, bucket: bytes | None, now: int) -> None:
        self.key = limits.key
        self.limits = limits
        self.running = running
        self.tokens = math.inf
        self.parked = 0
        self.taken = 0
        if limits.max_per_second is not None:
            self.tokens = refill(bucket, limits.max_per_second, now)

    def wait_ms(self) -> int | None:
        """None while a job may start under this key; else how long it should wait."""
        cap, rate = self.limits.max_running, self.limits.max_per_second
        waits = []
        if cap is not None and self.running >= cap:
            waits.append(park_ms(self.parked + 1))
        if rate is not None and self.tokens < 1:
            waits.append(math.ceil((1 + self.parked - self.tokens) * 1000 / rate))
        return max(waits) if waits else None

    def take(self, tr: Transaction, now: int) -> None:
        self.taken += 1
        if self.limits.max_running is not None:
            self.running += 1
            if self.taken == 1:  # concurrent claims of this key conflict (module docstring)
                tr.add_write_conflict_key(KEY_LIMITS.pack((self.key,)))
        rate = self.limits.max_per_second
        if rate is not None:
            self.tokens -= 1
            tr.set(KEY_RATES.pack((self.key,)), pack_value({"tk": self.tokens, "at": now}))


class KeyGate:
    """The keyed limits of one claim transaction (shared by every queue it visits)."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[str, _Key | None] = {}

    def admit(self, tr: Transaction, job: Job, now: int, tally: Tally | None = None) -> int | None:
        """Charge ``job`` (which names limit keys) to its keys and return None when it may
        be leased now; else charge nothing and return how many ms it should wait.
        ``tally`` holds the transaction's counter moves not yet written."""
        states = [self._key(tr, key, now, tally) for key in job.limit_keys]
        waits = [w for s in states if s is not None and (w := s.wait_ms()) is not None]
        if waits:
            for state in states:
                if state is not None:
                    state.parked += 1
            return max(1, max(waits))
        for state in states:
            if state is not None:
                state.take(tr, now)
        return None

    def _key(self, tr: Transaction, key: str, now: int, tally: Tally | None) -> _Key | None:
        """The key's state, loaded on first use in one round trip: its limits record (a
        serializable read: a change of the limits conflicts), its running counter (a
        snapshot: settlements do not conflict) and its bucket (serializable when used)."""
        if key in self._keys:
            return self._keys[key]
        limit_key, counter, bucket_key = (
            KEY_LIMITS.pack((key,)),
            running_key(key),
            KEY_RATES.pack((key,)),
        )
        data, count, bucket = tr.get_many([limit_key, counter, bucket_key], snapshot=True)
        tr.add_read_conflict_key(limit_key)
        limits = _decode(key, data)
        state = None
        if limits is not None:
            if limits.max_per_second is not None:
                tr.add_read_conflict_key(bucket_key)
            pending = 0 if tally is None else tally.pending_add(counter)
            state = _Key(limits, max(0, _count(count) + pending), bucket, now)
        self._keys[key] = state
        return state
