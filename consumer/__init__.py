"""The trio consumer: drains queues with an app's handlers.

:class:`Consumer` (configured by :class:`ConsumerConfig`) is one nursery holding the
claimer, the thread lanes (:mod:`consumer.lanes`), the async runners and group committer
(:mod:`consumer.runners`), the lease keeper (:mod:`consumer.keeper`) and the chores.
Blocking transactions meet trio in :mod:`consumer.bridge`; every task waits out a store
that does not answer through :mod:`consumer.resilience`; :mod:`consumer.serve` runs one
consumer process until a signal (``quick worker``); :mod:`consumer.metrics` and
:mod:`consumer.logs` export what it does.

``Consumer`` loads on first use, so reading :class:`ConsumerConfig` (the CLI's option
defaults) does not import trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consumer.config import ConsumerConfig

if TYPE_CHECKING:
    from consumer.runtime import Consumer

__all__ = ["Consumer", "ConsumerConfig"]


def __getattr__(name: str) -> Any:
    if name == "Consumer":
        from consumer.runtime import Consumer

        return Consumer
    raise AttributeError(f"module 'consumer' has no attribute {name!r}")
