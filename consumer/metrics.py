"""A consumer's Prometheus metrics, in a registry of its own, and the HTTP server for them.

Each :class:`ConsumerMetrics` owns a ``CollectorRegistry`` (never the process-global
one), so several consumers in one process, and tests, never collide. What it exports:

=====================================  =========  ==========================================
metric                                 type       meaning
=====================================  =========  ==========================================
``quick_jobs_total{topic,outcome}``    counter    attempts that ended, by :class:`Outcome`
``quick_job_duration_seconds{topic}``  histogram  claim to settled, handler and settlement
``quick_job_lease_left_ratio``         histogram  share of its lease a job had left as its
                                                  handler started (see below)
``quick_lease_losses_total``           counter    jobs whose lease passed to another owner
``quick_claims_total``                 counter    jobs leased by this consumer
``quick_jobs_running``                 gauge      jobs leased and not yet settled
``quick_queue_depth{queue,state}``     gauge      the deepest queues' counts (see below)
``quick_queues_depth{state}``          gauge      counts summed over every queue read
``quick_queues_with_work``             gauge      queues the last refresh read
``quick_transaction_retries_total``    counter    tries the process's retry loops retried,
``{code}``                                        by FoundationDB error code (1020 conflict)
``quick_claim_rounds_total``           counter    claim rounds this consumer committed
``quick_claim_round_tries_total``      counter    their tries, counted as each starts
=====================================  =========  ==========================================

The lease share left at a handler's start is the margin against a double run: a job
whose lease runs out while its handler runs or its outcome is recorded can be claimed
again by another consumer. With fast handlers most start above 5/6; many below 1/3 (the
keeper renews at 2/3) say the claims wait too long behind slow recording, and a lease
longer than the store's worst commit under load is the remedy.

The job path only increments counters and observes the histograms. Queue depth is read
apart from it, every ``depth_interval`` seconds, in one snapshot transaction
(:func:`quick.list_queues`: the pointer index and each queue's atomic counters, no
conflicts). With millions of tenants one label per queue would swamp Prometheus, so a
refresh reads at most ``depth_scan`` queues with work (in pointer-index order, i.e. by
queue name) and labels only the ``depth_top`` deepest of them (ready + scheduled +
leased); the sums over all queues read are in ``quick_queues_depth``. Every consumer
process exports the same depth figures: aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import quick
from keyspace.protocol import Database
from keyspace.retry import retry_counts
from quick.counters import queue_depth
from quick.jobs import COUNTED_STATES
from quick.outcomes import Outcome

__all__ = ["ConsumerMetrics", "QueueDepth", "deepest", "serve_metrics"]

log = logging.getLogger("quick.consumer")

#: Job durations from milliseconds to the default lease's multiples.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Lease shares: 1/6 is the least a claim starts with (consumer.config.START_MARGIN),
#: 2/3 where the keeper's renewal comes due, 5/6 where the backlog cap grows back.
LEASE_LEFT_BUCKETS = (1 / 6, 0.3, 0.5, 2 / 3, 5 / 6, 1.0)
QueueDepth = tuple[str, Mapping[str, int]]


def deepest(rows: Iterable[QueueDepth], top: int) -> list[QueueDepth]:
    """The ``top`` queues with the most pending jobs, deepest first (ties by name)."""
    ranked = sorted(rows, key=lambda row: (-queue_depth(row[1]), row[0]))
    return ranked[:top]


class _DepthCollector(Collector):
    """Exports the last refresh as one consistent set of samples, so no stale queue lingers."""

    def __init__(self) -> None:
        self.top: list[QueueDepth] = []
        self.totals: dict[str, int] = {}
        self.queues: int | None = None

    def collect(self) -> Iterator[Metric]:
        top, totals, queues = self.top, self.totals, self.queues  # one refresh's snapshot
        per_queue = GaugeMetricFamily(
            "quick_queue_depth",
            "Jobs by state in the deepest queues (at most depth_top of them).",
            labels=["queue", "state"],
        )
        for queue, counts in top:
            for state, count in counts.items():
                per_queue.add_metric([queue, state], count)
        overall = GaugeMetricFamily(
            "quick_queues_depth",
            "Jobs by state summed over every queue the last refresh read.",
            labels=["state"],
        )
        for state, count in totals.items():
            overall.add_metric([state], count)
        seen = GaugeMetricFamily(
            "quick_queues_with_work", "Queues the last refresh read (at most depth_scan)."
        )
        if queues is not None:
            seen.add_metric([], queues)
        yield from (per_queue, overall, seen)


class _RetryCollector(Collector):
    """Exports :func:`keyspace.retry.retry_counts`: the process's retried tries by error code."""

    def collect(self) -> Iterator[Metric]:
        retried = CounterMetricFamily(
            "quick_transaction_retries",
            "Transaction tries retried by this process, by FoundationDB error code.",
            labels=["code"],
        )
        for code, count in sorted(retry_counts().items()):
            retried.add_metric([str(code)], count)
        yield retried


class ConsumerMetrics:
    """One consumer's metrics; pass it to :class:`consumer.runtime.Consumer`.

    Args:
        registry: where the metrics live; a new ``CollectorRegistry`` by default.
        depth_interval: seconds between queue-depth refreshes; None never refreshes.
        depth_top: queues labelled in ``quick_queue_depth`` (the deepest ones).
        depth_scan: most queues one refresh reads.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        depth_interval: float | None = 5.0,
        depth_top: int = 20,
        depth_scan: int = 1000,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.depth_interval = depth_interval
        self.depth_top = depth_top
        self.depth_scan = depth_scan
        self.jobs = Counter(
            "quick_jobs",
            "Job attempts that ended, by topic and outcome.",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.durations = Histogram(
            "quick_job_duration_seconds",
            "Seconds from starting a claimed job to its settlement, by topic.",
            ["topic"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.lease_left = Histogram(
            "quick_job_lease_left_ratio",
            "Share of its lease a job had left as its handler started.",
            buckets=LEASE_LEFT_BUCKETS,
            registry=self.registry,
        )
        self.lease_losses = Counter(
            "quick_lease_losses",
            "Jobs whose lease passed to another owner before they settled.",
            registry=self.registry,
        )
        self.claims = Counter(
            "quick_claims", "Jobs leased by this consumer.", registry=self.registry
        )
        self.running = Gauge(
            "quick_jobs_running", "Jobs leased and not yet settled.", registry=self.registry
        )
        self.claim_rounds = Counter(
            "quick_claim_rounds", "Claim rounds this consumer committed.", registry=self.registry
        )
        self.claim_round_tries = Counter(
            "quick_claim_round_tries",
            "Tries of this consumer's claim rounds (one more per retried try).",
            registry=self.registry,
        )
        self._depth = _DepthCollector()
        self.registry.register(self._depth)
        self.registry.register(_RetryCollector())

    def job_settled(
        self, topic: str, outcome: Outcome, duration: float, *, lease_left: float | None = None
    ) -> None:
        """Count one attempt's end (the job path: increments only); ``lease_left`` is the
        share of its lease it had left as its handler started (None: not started)."""
        self.jobs.labels(topic, outcome.value).inc()
        self.durations.labels(topic).observe(duration)
        if lease_left is not None:
            self.lease_left.observe(lease_left)
        if outcome is Outcome.LEASE_LOST:
            self.lease_losses.inc()

    def refresh_depth(self, db: Database) -> None:
        """Read queue depths (one snapshot transaction, blocking) and publish them."""
        rows = quick.list_queues(db, limit=self.depth_scan)
        self.set_depth([(row["queue"], row["counts"]) for row in rows])

    def set_depth(self, rows: Sequence[QueueDepth]) -> None:
        """Publish one refresh: every queue read, with its counts by state."""
        totals = {state.value: 0 for state in COUNTED_STATES}
        for _, counts in rows:
            for state, count in counts.items():
                totals[state] = totals.get(state, 0) + count
        depth = self._depth
        depth.top, depth.totals, depth.queues = deepest(rows, self.depth_top), totals, len(rows)


@contextmanager
def serve_metrics(metrics: ConsumerMetrics, port: int, host: str = "127.0.0.1") -> Iterator[Any]:
    """Serve ``metrics`` at ``http://host:port/metrics`` (a daemon thread) while open.

    Raises:
        OSError: the address cannot be bound (in use, or not this machine's).
    """
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    log.info("metrics at http://%s:%d/metrics", host, port)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
