"""Debounce and throttle: enqueue options that count jobs by a caller's ``key``.

Theory of operation
-------------------
**Debounce** (``enqueue(..., debounce=seconds, key=k)``): the first enqueue of a window
stores a job visible ``seconds`` later and names it at ``("deb", queue, k)``. Every
enqueue while that job is still waiting (scheduled, not yet visible) replaces its
payload (and topic and priority) and returns its id, so only the last payload runs,
once, when the window ends. The window is fixed from its first enqueue (a stream of
enqueues cannot postpone the job forever). Once the job is visible or has been claimed
(even if snoozed or released back since) or finished, the next enqueue starts a new window
with a new job. The enqueue reads the named job's
record serializably, so an enqueue racing the claim of that job conflicts with it and,
retried, starts the next window instead of changing a job already running. A retry
after ``commit_unknown_result`` finds its own job named and writes the same payload
again: one job, the last payload.

**Throttle** (``enqueue(..., throttle=(n, seconds), key=k)``): at most ``n`` jobs per
key are scheduled to start in each window of ``seconds`` (windows aligned to the
epoch), counted at ``("thr", k, window_ms)``. An extra job is either dropped or
delayed to the start of the first later window with room (``when_throttled``,
``"delay"`` by default). With ``throttle`` given, ``enqueue`` returns a
:class:`Throttled` saying which, rather than the bare id: a caller that throttles must
handle a drop, and an exception would make the ordinary "delayed" answer awkward; a
call without ``throttle`` keeps returning the id. Counted is when a job is *scheduled*
to start: a backlog can still start it later than that. A retry after
``commit_unknown_result`` answers as the committed try did and counts nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import DEBOUNCE, JOB_DIRECTORY, THROTTLE, describe, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries, transactional
from quick.enqueueing import _Prepared, store_new
from quick.errors import InvalidArgument
from quick.jobs import Job, JobState, now_ms
from quick.records import load_job, store_job
from quick.validation import MAX_DELAY_MS, check_name

__all__ = [
    "Throttled",
    "THROTTLE_MODES",
    "MAX_THROTTLE_WINDOWS",
    "window_ms",
    "check_throttle",
    "debounced",
    "throttled",
]

log = logging.getLogger("quick.store")

#: What happens to a job over its throttle: delayed to the next window with room, or dropped.
THROTTLE_MODES = ("delay", "drop")
#: The most future windows one throttle key keeps counts for; a delayed job that would
#: need a later one is dropped instead (and the caller is told), so the record stays small.
MAX_THROTTLE_WINDOWS = 1000
#: The most runs per window a throttle accepts.
MAX_THROTTLE_RUNS = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled:
    """What a throttled enqueue did: ``outcome`` is ``"enqueued"`` (it runs as asked),
    ``"delayed"`` (it runs at ``run_at_ms``, the start of a later window) or
    ``"dropped"`` (nothing was stored; ``job_id`` is None)."""

    outcome: str
    job_id: str | None
    run_at_ms: int | None


def window_ms(field: str, value: Any) -> int:
    """A window in seconds (a number or timedelta) as positive milliseconds."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidArgument(field, f"must be seconds or a timedelta, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(field, f"must be a positive, finite number of seconds, not {value!r}")
    ms = round(seconds * 1000)
    if not 1 <= ms <= MAX_DELAY_MS:
        raise InvalidArgument(field, f"must be from 1 ms to {MAX_DELAY_MS // 1000} seconds")
    return ms


def check_throttle(throttle: Any, mode: Any) -> tuple[int, int]:
    """``throttle`` as (runs, window ms).

    Raises:
        InvalidArgument: not an ``(n, seconds)`` pair with ``n`` from 1 to 1,000,000 and a
            positive window, or an unknown ``when_throttled``.
    """
    if mode not in THROTTLE_MODES:
        raise InvalidArgument("when_throttled", f"must be one of {THROTTLE_MODES}")
    if not isinstance(throttle, tuple | list) or len(throttle) != 2:
        raise InvalidArgument("throttle", "must be an (n, seconds) pair")
    runs, seconds = throttle
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= MAX_THROTTLE_RUNS:
        raise InvalidArgument("throttle", f"n must be from 1 to {MAX_THROTTLE_RUNS}, not {runs!r}")
    return runs, window_ms("throttle", seconds)


def check_key(key: Any) -> str:
    """The ``key`` a debounce or throttle counts by."""
    if key is None:
        raise InvalidArgument("key", "debounce and throttle need a key naming what they count")
    name = check_name("key", key)
    assert name is not None
    return name


# -- debounce ---------------------------------------------------------------------------


def debounced(db_or_tr: Database | Transaction, prepared: _Prepared, key: str, window: int) -> str:
    """Store ``prepared`` as the last payload of ``key``'s window; the id that runs."""
    return _debounce(db_or_tr, prepared, key, window, Tries())


@transactional
def _debounce(tr: Transaction, prepared: _Prepared, key: str, window: int, tries: Tries) -> str:
    job = prepared.job
    first = tries.first()
    keys = queue_keys(job.queue)
    named = DEBOUNCE.pack((job.queue, key))
    holder = tr.get(named)
    now = now_ms()
    if holder is not None:
        waiting = _waiting(tr, holder.decode(), job.queue, now)
        if waiting is not None:
            latest = waiting.evolve(topic=job.topic, payload=job.payload, priority=job.priority)
            store_job(tr, keys, waiting, latest)
            return waiting.id
    fresh = job.evolve(vis_ms=now + window, state=JobState.SCHEDULED)
    job_id = store_new(tr, _Prepared(fresh, fresh.to_value(), prepared.fresh_id), first_try=first)
    tr.set(named, job_id.encode())
    return job_id


def _waiting(tr: Transaction, job_id: str, queue: str, now: int) -> Job | None:
    """The debounced job still waiting for its window to end, or None: once a claim has
    held it (it carries a lease token, even when snoozed or released back), it started,
    and a new payload goes to a new job."""
    try:
        job = load_job(tr, queue_keys(queue), job_id)
    except CorruptValue:
        return None  # quarantined by whoever claims it; a new window starts
    if job is None or job.state is not JobState.SCHEDULED or job.vis_ms <= now or job.token:
        return None
    return job


# -- throttle ---------------------------------------------------------------------------


def throttled(
    db_or_tr: Database | Transaction,
    prepared: _Prepared,
    key: str,
    runs: int,
    window: int,
    mode: str,
) -> Throttled:
    """Store ``prepared`` unless ``key`` is over ``runs`` per ``window`` ms (then delay
    or drop it, per ``mode``); what was done."""
    return _throttle(db_or_tr, prepared, key, runs, window, mode, Tries())


@transactional
def _throttle(
    tr: Transaction,
    prepared: _Prepared,
    key: str,
    runs: int,
    window: int,
    mode: str,
    tries: Tries,
) -> Throttled:
    job = prepared.job
    first = tries.first()
    if not (first and prepared.fresh_id) and tr.get(JOB_DIRECTORY.pack((job.id,))) is not None:
        said = tries.unsure.get(job.id)
        if said is None:  # a job held this id already: enqueueing it again adds nothing
            return Throttled(outcome="enqueued", job_id=job.id, run_at_ms=None)
        done, at = said.split(":")  # an earlier try committed: answer as it did
        return Throttled(outcome=done, job_id=job.id, run_at_ms=int(at))
    counted = THROTTLE.pack((key, window))
    now = now_ms()
    counts = _counts(counted, tr.get(counted), now - now % window)
    start = job.vis_ms - job.vis_ms % window
    slot = start
    while counts.get(slot, 0) >= runs:
        slot += window
        if mode == "drop" or len(counts) >= MAX_THROTTLE_WINDOWS:
            return Throttled(outcome="dropped", job_id=None, run_at_ms=None)
    counts[slot] = counts.get(slot, 0) + 1
    tr.set(counted, pack_value({"wc": sorted([at, n] for at, n in counts.items())}))
    if slot == start:
        store_new(tr, prepared, first_try=first)
        outcome, run_at = "enqueued", job.vis_ms
    else:
        later = job.evolve(vis_ms=slot, state=JobState.SCHEDULED)
        store_new(tr, _Prepared(later, later.to_value(), prepared.fresh_id), first_try=first)
        outcome, run_at = "delayed", slot
    tries.did({job.id: f"{outcome}:{run_at}"})
    return Throttled(outcome=outcome, job_id=job.id, run_at_ms=run_at)


def _counts(key: bytes, data: bytes | None, current: int) -> dict[int, int]:
    """The stored counts of windows from ``current`` on (older ones are forgotten); a
    record that does not decode counts as empty (logged by its key)."""
    if data is None:
        return {}
    try:
        record = unpack_value(data)
        pairs = record["wc"]
        return {int(at): int(n) for at, n in pairs if at >= current}
    except (CorruptValue, KeyError, TypeError, ValueError):
        log.warning("throttle record that does not decode %s: counted afresh", describe(key))
        return {}
