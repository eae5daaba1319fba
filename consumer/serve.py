"""Running one consumer process until a signal: the body of ``quick worker``.

SIGINT or SIGTERM stops gracefully (claiming stops, unstarted claims are released,
running jobs get the grace period); a second signal cancels at once.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database
from quick.app import App

if TYPE_CHECKING:
    from consumer.metrics import ConsumerMetrics

__all__ = ["serve"]


def serve(
    db: Database, app: App, config: ConsumerConfig, metrics: ConsumerMetrics | None = None
) -> Counter[str]:
    """Run a consumer (recording ``metrics`` if given) until SIGINT/SIGTERM; return its
    outcome counts."""
    consumer = Consumer(db, app, config, metrics=metrics)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch, signals, consumer)
                await consumer.run()
                nursery.cancel_scope.cancel()

    trio.run(main)
    return consumer.outcomes


async def _watch(signals: AsyncIterator[int], consumer: Consumer) -> None:
    count = 0
    async for _ in signals:
        count += 1
        if count == 1:
            consumer.stop()
        else:
            consumer.kill()
            return
