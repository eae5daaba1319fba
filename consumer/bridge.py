"""Where blocking transactions meet trio: ``await bridge.run(fn, *args)``.

Transactions are blocking calls on both engines. The consumer's own transactions
(claim rounds, lease renewals, releases, the group committer's batches, chores) run
through here in worker threads under a ``trio.CapacityLimiter``, so a consumer never
holds more of them in flight than the limiter allows and the trio loop never blocks.
Handlers are not run here: lanes (:mod:`consumer.lanes`) and async runners run them
under the consumer's slots, a lane recording its outcomes from its own thread.

Cancellation: a transaction already running in a thread cannot be interrupted. When
the calling task is cancelled, the call is abandoned: ``Cancelled`` is raised at once
and the thread finishes the transaction on its own, its result discarded. It is still
either committed or not, never half-applied. (Waiting for it instead would hold a stop
for as long as a store that does not answer takes to time out: 30 s by default.)
Callers whose call must be seen through shield it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from keyspace.protocol import Database

__all__ = ["Bridge"]

T = TypeVar("T")


class Bridge:
    """Runs blocking database calls from trio, at most ``limit`` at a time."""

    def __init__(self, db: Database, limit: int = 8) -> None:
        self.db = db
        self.limiter = trio.CapacityLimiter(limit)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread; see the module docstring on cancellation."""
        call = functools.partial(fn, *args, **kwargs)
        return await trio.to_thread.run_sync(call, limiter=self.limiter, abandon_on_cancel=True)

    async def call_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(self.db, *args, **kwargs)`` in a worker thread (fn is usually transactional,
        so it opens, retries and commits its own transaction)."""
        return await self.run(fn, self.db, *args, **kwargs)
