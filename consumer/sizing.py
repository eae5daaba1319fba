"""How much work a consumer takes on, and how many lanes it runs: pure decisions from
what its slots are doing, so slow jobs are not hoarded while another consumer is idle.

Theory of operation
-------------------
A slot is *stalled* when the handler it runs (in a lane or an async runner) has run for
longer than :data:`STALL_SECONDS`: a long job, which no average foresaw. (Commits do
not count: a slow store slows every job alike, and more lanes would not help.)

* **Claim size** (:func:`claim_size`). While handlers are fast (a slot runs at least
  one job per :data:`~consumer.config.CLAIM_SECONDS`), a claim brings that much work
  for every slot not stalled, up to ``batch_size``, and the next claim leaves once half
  of it is left, so one batch is in flight while the last runs (the drain's speed).
  While they are slow, or before any has finished (their time unknown), a claim brings
  only what the idle slots can start now: a job another consumer could start at once
  is not left waiting here behind a long handler.
* **Lanes** (:func:`lanes_wanted`). Sync handlers share one lane while a lane clears the
  backlog within a slice; before the handler time is known, and while a lane is
  stalled, every waiting claim gets its own lane (as far as there are slots).
* **Queues per claim round** (:func:`round_queues`). A consumer's first round visits
  one queue, and each round that commits at its first try lets the next visit twice as
  many; a claim round that conflicted with another consumer's is retried visiting half
  as many, and from then on a clean round lets the next visit only 5% more. Consumers fighting over
  few due queues then each take one or two (and rarely meet), while a lone consumer
  over many one-job queues keeps filling its batch from many.
* **Backlog by lease** (:func:`backlog_cap`). Fast handlers whose recording is slow (a
  loaded store) drain a batch slower than their handler time says, and claims waiting
  behind it then rely on the keeper alone; a claim that waited past a keeper interval
  unrenewed may start with its lease nearly over and be taken again by another round
  while it runs. So the most a claim brings is halved while the oldest waiting claim has
  less than two thirds of its lease left (and nothing more is claimed until it starts),
  and grows back by a quarter while the oldest has more than five sixths.
* **Backlog by recording time** (:func:`wait_budget`, with ``claim_size``'s
  ``most_waiting``). A claim's lease runs from the claim round, so the claims it brings
  must start while most of it is left, behind the claims already waiting. A slot
  spends on each job its handler's time *and* its share of the transaction that
  records the slice (under load that share, not the handler, is most of it: a slice
  of 20 jobs of 1 ms recorded in 150-600 ms). From the measured slot-seconds per job,
  handler and recording together, the claims held unstarted are kept to what the slots
  start within :data:`WAIT_SHARE` of the lease, so that a fast job starts before the
  keeper's first renewal of it is due and never depends on a renewal (which conflicts
  with the consumer's own settlements) to stay held. With the default 30 s lease this
  holds only while a job costs its slot over 10 s / ``batch_size``.
* **Hand-back.** Claims that still wait while every slot has been stalled for
  :data:`HANDBACK_SECONDS` are given back (released, their attempts refunded), so an
  idle consumer takes them; this one claims nothing more until a slot frees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from consumer.config import CLAIM_SECONDS
from consumer.lanes import SLICE_SECONDS, HandlerClock

__all__ = [
    "HANDBACK_SECONDS",
    "STALL_SECONDS",
    "WAIT_SHARE",
    "ClaimSize",
    "backlog_cap",
    "claim_size",
    "lanes_wanted",
    "round_queues",
    "stalled",
    "wait_budget",
]

#: A handler that has run this long stalls its slot: five slices, and short beside any
#: job worth moving to another consumer.
STALL_SECONDS = 0.1
#: How long claims may wait while every slot is stalled before they are given back:
#: a job ending by then loses nothing, and the release and another consumer's claim
#: cost a few milliseconds beside a wait of a slow job's length.
HANDBACK_SECONDS = 0.5
#: The most of its lease a claim should spend waiting to start: a third, when the
#: keeper renews it first (it renews a lease with less than two thirds left), and when
#: :func:`backlog_cap` starts to halve the claims.
WAIT_SHARE = 1 / 3


@dataclass(frozen=True, slots=True)
class ClaimSize:
    """The next claim: lease at most ``limit`` jobs now (0: claim nothing yet), and be
    woken to claim again when the waiting claims shrink to ``low_water``."""

    limit: int
    low_water: int


def claim_size(
    *,
    batch_size: int,
    concurrency: int,
    running: int,
    stalled: int,
    waiting: int,
    handler_seconds: float | None,
    most_waiting: int | None = None,
) -> ClaimSize:
    """How many jobs the next claim should lease; see the module docstring.

    Args:
        batch_size: the most one claim leases.
        concurrency: the consumer's slots.
        running: slots busy now (stalled ones included).
        stalled: slots whose current work has run past :data:`STALL_SECONDS`.
        waiting: claims held but not started.
        handler_seconds: the average handler time, None before any handler finished.
        most_waiting: the most claims that should be held unstarted, the new ones
            included (:func:`wait_budget`); None: no bound but ``batch_size``.
    """
    if handler_seconds is not None:
        per_slot = math.inf if handler_seconds <= 0 else CLAIM_SECONDS / handler_seconds
        if per_slot >= 1:
            unstalled = max(0, concurrency - stalled)
            limit = min(batch_size, math.ceil(unstalled * per_slot)) if unstalled else 0
            if most_waiting is not None:
                limit = min(limit, most_waiting)
            low_water = limit // 2
            if waiting > low_water:
                return ClaimSize(0, low_water)
            if most_waiting is not None:
                limit = min(limit, most_waiting - waiting)
            return ClaimSize(limit, low_water)
    idle = concurrency - running - waiting
    return ClaimSize(max(0, min(batch_size, idle)), 0)


def backlog_cap(
    cap: int, oldest_left_ms: int | None, lease_ms: int, *, least: int, most: int
) -> tuple[int, bool]:
    """The most jobs the next claim may lease (from ``cap``, between ``least`` and
    ``most``), and whether to claim now, given how much lease the oldest waiting claim
    has left (None: none waits); see the module docstring."""
    if oldest_left_ms is not None and oldest_left_ms < lease_ms * 2 // 3:
        return max(least, cap // 2), False
    if oldest_left_ms is None or oldest_left_ms > lease_ms * 5 // 6:
        return min(most, max(cap + 1, cap * 5 // 4)), True
    return cap, True


def wait_budget(*, lease_ms: int, job_seconds: float | None, concurrency: int) -> int | None:
    """The most claims a consumer should hold unstarted so that the last of them starts
    within :data:`WAIT_SHARE` of its lease, when each job costs a slot ``job_seconds``
    (its handler and its share of the recording transaction, averaged) and
    ``concurrency`` slots run them; at least one per slot. None while the cost is
    unknown (no job has finished yet)."""
    if job_seconds is None:
        return None
    if job_seconds <= 0:
        return None
    startable = concurrency * lease_ms * WAIT_SHARE / 1000 / job_seconds
    return max(concurrency, math.floor(startable))


def lanes_wanted(backlog: int, handler_seconds: float | None, stalled: int = 0) -> int:
    """Lanes that should run ``backlog`` waiting sync claims (stalled lanes not counted):
    enough to clear it within about a slice; one per claim while the time is unknown,
    or while ``stalled`` lanes show that the average time misleads."""
    if not backlog:
        return 0
    if handler_seconds is None or stalled:
        return backlog
    return max(1, math.ceil(backlog * handler_seconds / SLICE_SECONDS))


def stalled(clocks: Iterable[HandlerClock], now: float) -> int:
    """How many of ``clocks`` show a handler running for more than :data:`STALL_SECONDS`
    at ``now`` (``time.monotonic()``)."""
    count = 0
    for clock in clocks:
        since = clock.since  # read once: its thread may clear it meanwhile
        if since is not None and now - since > STALL_SECONDS:
            count += 1
    return count


#: Growth of a consumer's queues per claim round after each round that committed at its
#: first try, once its rounds have conflicted. Halving on a conflict and growing by this
#: settle where about ln(1.05) / (ln(1.05) + ln(2)) = 6.6% of tries conflict, when
#: conflicts come from sharing queues; a faster growth settles higher (1.25: 24%).
ROUND_GROWTH = 1.05


def round_queues(current: int, *, conflicted: bool, calm: bool, most: int) -> int:
    """The most queues the next claim round visits, 1 to ``most``: half after a
    conflicted try; after a round that committed at once, twice as many while ``calm``
    (no round of this consumer has conflicted yet: a slow start, as TCP's) and
    :data:`ROUND_GROWTH` times more (at least one more) after that."""
    if conflicted:
        return max(1, current // 2)
    grown = current * 2 if calm else max(current + 1, int(current * ROUND_GROWTH))
    return min(most, grown)
