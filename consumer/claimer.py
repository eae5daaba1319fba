"""The consumer's claim rounds as transactions: how many queues a round visits, and
whether it leases them first.

:class:`RoundClaimer` runs one claim round (:func:`quick.claim_rounds.claim_round`) in
a transaction of its own, retried. While this consumer's rounds conflict with other
consumers' (:func:`consumer.sizing.lease_first`), the round is preceded by a short
transaction that leases its queues (:func:`quick.claim_rounds.lease_round`, QuiCK's
order), so concurrent rounds pass those queues over. The number of queues a round
visits adapts to its conflicts (:func:`consumer.sizing.round_queues`).

Both transactions are given their :class:`~keyspace.retry.Tries` as an argument, not
in a closure, so the retry loop tells them when a try's commit result was unknown.
These are blocking calls: the claimer runs them in a worker thread.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from consumer.config import ConsumerConfig
from consumer.sizing import LEASE_ROUNDS, lease_first, round_queues
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries
from quick.claim_rounds import (
    MAX_QUEUES_PER_ROUND,
    ClaimRound,
    RoundLease,
    claim_round,
    lease_round,
)
from quick.jobs import now_ms

if TYPE_CHECKING:
    from consumer.metrics import ConsumerMetrics

__all__ = ["RoundClaimer"]


class RoundClaimer:
    """Runs a consumer's claim rounds and keeps what their conflicts taught it."""

    def __init__(
        self, db: Database, config: ConsumerConfig, metrics: ConsumerMetrics | None
    ) -> None:
        self.db = db
        self.config = config
        self.metrics = metrics
        #: The most queues the next claim round visits (see consumer.sizing.round_queues),
        #: and whether no round has conflicted yet.
        self.queues = 1
        self.calm = True
        #: Rounds in a row whose transactions committed at their first try (lease_first).
        self.clean_rounds = LEASE_ROUNDS

    def claim(self, limit: int, cursor: bytes | None, seed: float) -> ClaimRound:
        """One claim round (see the module docstring): up to ``limit`` claims, the scan
        resuming after ``cursor``, its random walk drawn from ``seed``."""
        rng = random.Random(seed)
        lease_tries = Tries()
        leased: RoundLease | None = None
        if lease_first(self.clean_rounds):
            leased = self.db.transact(self._lease, lease_tries, cursor, seed, rng)
            if self.metrics is not None:
                self.metrics.claim_leases.inc()
            if leased.idle is not None or not leased.queues:
                self._committed(clean=lease_tries.runs == 1)
                return ClaimRound([], leased.due, leased.cursor, leased.idle)
        tries = Tries()
        found = self.db.transact(self._claim, tries, limit, cursor, seed, rng, leased)
        self._committed(clean=tries.runs == 1 and lease_tries.runs <= 1)
        if self.metrics is not None:
            self.metrics.claim_rounds.inc()
        return found

    def _lease(
        self,
        tr: Transaction,
        tries: Tries,
        cursor: bytes | None,
        seed: float,
        rng: random.Random,
    ) -> RoundLease:
        """One try of the transaction that leases the next round's queues."""
        self._begin(tries, "claim_lease_tries", rng, seed)
        return lease_round(
            tr,
            self.config.owner,
            now_ms(),
            count=self.queues,
            cursor=cursor,
            scan_limit=self.config.scan_limit,
            rng=rng,
        )

    def _claim(
        self,
        tr: Transaction,
        tries: Tries,
        limit: int,
        cursor: bytes | None,
        seed: float,
        rng: random.Random,
        leased: RoundLease | None,
    ) -> ClaimRound:
        """One try of the claim round itself."""
        self._begin(tries, "claim_round_tries", rng, seed)
        return claim_round(
            tr,
            self.config.owner,
            now_ms(),
            limit=limit,
            lease_ms=self.config.lease_ms,
            tries=tries,
            cursor=cursor,
            scan_limit=self.config.scan_limit,
            rng=rng,
            max_queues=self.queues,
            leased=leased,
        )

    def _begin(self, tries: Tries, counter: str, rng: random.Random, seed: float) -> None:
        """Start a try: a retry visits fewer queues, elsewhere on the page; the try is
        counted (in the metric ``counter``) as it starts, so a scrape sees a long retry."""
        if not tries.first():
            self._conflicted()
        if self.metrics is not None:
            getattr(self.metrics, counter).inc()
        rng.seed(seed + tries.runs)

    def _conflicted(self) -> None:
        """A try conflicted: the next rounds visit fewer queues and lease them first."""
        self.calm = False
        self.clean_rounds = 0
        self.queues = round_queues(
            self.queues, conflicted=True, calm=False, most=MAX_QUEUES_PER_ROUND
        )

    def _committed(self, *, clean: bool) -> None:
        """A round committed; one that did at its first try lets the next visit more."""
        if clean:
            self.clean_rounds += 1
            self.queues = round_queues(
                self.queues, conflicted=False, calm=self.calm, most=MAX_QUEUES_PER_ROUND
            )
