"""How a consumer runs: :class:`ConsumerConfig`, and the tuning constants of its run loop."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from quick.jobs import DEFAULT_LEASE_MS
from quick.operations import FINISHED_RETENTION_MS

__all__ = [
    "BUSY_BACKOFF",
    "CLAIM_SECONDS",
    "EWMA_WEIGHT",
    "PURGE_INTERVAL",
    "PURGE_PAGE",
    "START_MARGIN",
    "ConsumerConfig",
]

#: The longest pause between claim rounds while due queues are all leased by others.
BUSY_BACKOFF = 0.005
#: The work one claim should bring, in seconds of all slots at the average handler time.
CLAIM_SECONDS = 0.1
#: Smoothing of the average handler time (weight of the newest batch).
EWMA_WEIGHT = 0.3
#: The share of its lease a waiting claim must have left to start (see
#: :func:`consumer.lanes.may_start`): the keeper renews at a third left, so a claim it
#: looks after keeps more; one below has outlived a paused process or a failed renewal.
START_MARGIN = 1 / 6
#: Tombstones of finished jobs purged per transaction by the purge chore.
PURGE_PAGE = 500
#: Seconds between purge chores.
PURGE_INTERVAL = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerConfig:
    """How a consumer runs.

    ``batch_size`` is the most jobs one claim leases; ``keep_finished_ms`` how long
    finished jobs' tombstones are kept (for idempotent enqueue by id), None to keep
    them for an operator to purge.
    """

    concurrency: int = 8
    #: A claim round costs a round trip whatever its size, so on FoundationDB's latency a
    #: larger batch drains faster (fewer are leased when jobs are slow or many queues are due).
    batch_size: int = 200
    lease_ms: int = DEFAULT_LEASE_MS
    owner: str = field(default_factory=lambda: f"consumer-{uuid.uuid4().hex[:8]}")
    max_idle: float = 1.0
    #: Pointer-index entries one claim round reads (keys only, snapshot): a round takes
    #: one contiguous window of them, so a page ten batches long keeps consumers that
    #: scan the same page apart (see :func:`quick.claim_rounds.claim_round`).
    scan_limit: int = 2000
    grace: float = 30.0
    cron: bool = True
    keep_finished_ms: int | None = FINISHED_RETENTION_MS
    #: Whether idle consumers of one store on one host pass the wake baton
    #: (:mod:`consumer.baton`): one of them claims new work when woken, not all at once.
    wake_baton: bool = True

    @property
    def start_margin_ms(self) -> int:
        """A waiting claim starts only with more of its lease left than this."""
        return round(self.lease_ms * START_MARGIN)
