"""A consumer's claim rounds: each one transaction of its own, retried, and the number of
queues the next one visits (:func:`consumer.sizing.round_queues`), learned from how the
last ones went.

Retry semantics: a round's :class:`~keyspace.retry.Tries` is made before the retry loop
and passed to it as an argument, so the loop tells it when a try's commit result is
unknown and the retry takes back what that try leased (:func:`quick.claim_rounds.claim_round`).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from consumer.config import ConsumerConfig
from consumer.sizing import round_queues
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries
from quick.claim_rounds import MAX_QUEUES_PER_ROUND, ClaimRound, claim_round
from quick.jobs import now_ms

if TYPE_CHECKING:  # prometheus_client is imported only by consumers that export metrics
    from consumer.metrics import ConsumerMetrics

__all__ = ["RoundClaimer"]


class RoundClaimer:
    """Runs one consumer's claim rounds (blocking: call it from a worker thread, one
    round at a time)."""

    def __init__(
        self, db: Database, config: ConsumerConfig, metrics: ConsumerMetrics | None
    ) -> None:
        self.db = db
        self.config = config
        self.metrics = metrics
        #: The most queues the next round visits, and whether no round has conflicted yet.
        self.queues = 1
        self.calm = True

    def claim(self, limit: int, cursor: bytes | None, seed: float) -> ClaimRound:
        """One claim round of up to ``limit`` jobs, scanning from ``cursor``; ``seed``
        picks where on the page it starts (each retry starts elsewhere)."""
        config = self.config
        rng = random.Random(seed)

        def body(tr: Transaction, tries: Tries) -> ClaimRound:
            if not tries.first():  # a retry: visit fewer queues, elsewhere on the page
                self.calm = False
                self.queues = round_queues(
                    self.queues, conflicted=True, calm=False, most=MAX_QUEUES_PER_ROUND
                )
            if self.metrics is not None:  # counted as it starts: a scrape sees a long retry
                self.metrics.claim_round_tries.inc()
            rng.seed(seed + tries.runs)
            return claim_round(
                tr,
                config.owner,
                now_ms(),
                limit=limit,
                lease_ms=config.lease_ms,
                tries=tries,
                cursor=cursor,
                scan_limit=config.scan_limit,
                rng=rng,
                max_queues=self.queues,
            )

        tries = Tries()
        found = self.db.transact(body, tries)
        if tries.runs == 1:
            self.queues = round_queues(
                self.queues, conflicted=False, calm=self.calm, most=MAX_QUEUES_PER_ROUND
            )
        if self.metrics is not None:
            self.metrics.claim_rounds.inc()
        return found
