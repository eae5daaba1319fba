"""Running one consumer process until a signal: the body of ``quick worker``.

SIGINT or SIGTERM stops gracefully (claiming stops, unstarted claims are released,
running jobs get the grace period). A second signal means "stop now": running jobs are
abandoned and :func:`serve` raises :class:`StoppedNow`, so the process exits non-zero
(``quick worker`` exits 128 + the signal's number: 143 for SIGTERM, 130 for SIGINT).
The jobs it held stay leased, and run again once their leases expire.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from consumer.runtime import Consumer, ConsumerConfig
from keyspace.errors import QuickError
from keyspace.protocol import Database
from quick.app import App

if TYPE_CHECKING:
    from consumer.metrics import ConsumerMetrics

__all__ = ["StoppedNow", "serve"]


class StoppedNow(QuickError):
    """A second signal stopped the consumer at once; jobs it held stay leased until their
    leases expire. ``signum`` is that signal, ``outcomes`` the counts until then."""

    def __init__(self, signum: int, outcomes: Counter[str]) -> None:
        self.signum = signum
        self.outcomes = outcomes
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped at once by a second {name}: jobs this worker held stay leased "
            "and run again once their leases expire"
        )


def serve(
    db: Database, app: App, config: ConsumerConfig, metrics: ConsumerMetrics | None = None
) -> Counter[str]:
    """Run a consumer (recording ``metrics`` if given) until SIGINT/SIGTERM; return its
    outcome counts.

    Raises:
        StoppedNow: a second signal arrived before the graceful stop was done.
    """
    consumer = Consumer(db, app, config, metrics=metrics)
    received: list[int] = []

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch, signals, consumer, received)
                await consumer.run()
                nursery.cancel_scope.cancel()

    trio.run(main)
    if len(received) > 1:
        raise StoppedNow(received[1], consumer.outcomes)
    return consumer.outcomes


async def _watch(signals: AsyncIterator[int], consumer: Consumer, received: list[int]) -> None:
    async for signum in signals:
        received.append(signum)
        if len(received) == 1:
            consumer.stop()
        else:
            consumer.kill()
            return
