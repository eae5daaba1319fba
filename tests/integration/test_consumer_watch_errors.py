"""An idle consumer whose watches keep failing backs off instead of spinning claim rounds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

import keyspace
import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database, Transaction
from keyspace.retry import run_transaction

T = TypeVar("T")


class FailingWatch:
    """A watch that fails at once, as FoundationDB's do with too_many_watches (1032)."""

    failed = False

    def wait(self, timeout: float | None = None) -> bool:
        self.failed = True
        return True

    def cancel(self) -> None:
        pass


class FailingWatches:
    """A database whose transactions are the engine's, except that every watch fails."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.url = inner.url
        self.namespace = inner.namespace
        self.watches = 0

    def create_transaction(self) -> Transaction:
        outer = self

        class Proxy:
            def __init__(self, tr: Transaction) -> None:
                self._tr = tr

            def __getattr__(self, name: str) -> Any:
                return getattr(self._tr, name)

            def watch(self, key: bytes) -> FailingWatch:
                self._tr.watch(key).cancel()
                outer.watches += 1
                return FailingWatch()

        return Proxy(self.inner.create_transaction())

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return run_transaction(self, fn, *args, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.inner.close()


def test_consumer_idle_with_failing_watches_backs_off(tmp_path: Path) -> None:
    db = FailingWatches(keyspace.open(f"sqlite:///{tmp_path / 'q.db'}"))
    app = quick.App()

    @app.job("noop")
    def noop(payload: Any, meta: quick.Meta) -> None:
        pass

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, cron=False))  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await trio.sleep(1.5)
            consumer.stop()

    trio.run(main)
    db.close()
    # Each idle round arms one watch. Without a pause they follow each other as fast as
    # a claim round commits (hundreds a second); FoundationDB's backoff (10 ms doubling
    # to 1 s, jittered) allows about a dozen in 1.5 s.
    assert 1 <= db.watches <= 40
