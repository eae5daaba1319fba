"""An idle consumer claims a new job from the thread its wake-up watch woke in.

Each hop between a worker thread and trio costs a scheduling delay, felt most on a busy
machine, so the claim round that follows a wake-up runs in the same worker-thread call
that waited on the watch, not in a second one started from trio.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import trio

import keyspace
import quick
from consumer.runtime import Consumer, ConsumerConfig
from quick.claim_rounds import ClaimRound

_call = threading.local()


def _numbered(fn: Any, number: int) -> Any:
    """``fn``, noting in the running thread which ``to_thread`` call this is."""

    @functools.wraps(fn)
    def run(*args: Any) -> Any:
        _call.number = number
        try:
            return fn(*args)
        finally:
            _call.number = None

    return run


class RecordingConsumer(Consumer):
    """Notes, for each claim round that claimed something, the ``to_thread`` call it ran
    in, and for each wake-up wait, the call it waited in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claimed_in: list[int | None] = []
        self.waited_in: list[int | None] = []

    def _claim_round(self, limit: int, cursor: bytes | None, seed: float) -> ClaimRound:
        found = super()._claim_round(limit, cursor, seed)
        if found.claims:
            self.claimed_in.append(getattr(_call, "number", None))
        if found.idle is not None:
            watch = found.idle[0]
            wait = watch.wait

            def noted(timeout: float | None = None) -> bool:
                self.waited_in.append(getattr(_call, "number", None))
                return wait(timeout)

            watch.wait = noted  # type: ignore[method-assign]
        return found


def test_idle_consumer_claims_in_the_thread_that_woke(tmp_path: Path, monkeypatch: Any) -> None:
    calls = iter(range(1, 1_000_000))
    run_sync = trio.to_thread.run_sync

    async def numbered_run_sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await run_sync(_numbered(fn, next(calls)), *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", numbered_run_sync)
    db = keyspace.open(f"sqlite:///{tmp_path / 'q.db'}")
    app = quick.App()
    ran = trio.Event()
    token: list[trio.lowlevel.TrioToken] = []

    @app.job("noop")
    def noop(payload: Any, meta: quick.Meta) -> None:
        token[0].run_sync_soon(ran.set)

    async def main() -> None:
        token.append(trio.lowlevel.current_trio_token())
        consumer = RecordingConsumer(db, app, ConsumerConfig(concurrency=2, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            with trio.fail_after(10):
                while not consumer.waited_in:  # idle, waiting on its watch
                    await trio.sleep(0.01)
                await trio.sleep(0.05)
                quick.enqueue(db, "q", "noop", None)
                await ran.wait()
            consumer.stop()
        assert len(consumer.claimed_in) == 1
        assert consumer.claimed_in[0] in consumer.waited_in

    trio.run(main)
    db.close()


class StoppingConsumer(Consumer):
    """Stops itself while the claim round that follows a wake-up is still running."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token: trio.lowlevel.TrioToken | None = None
        self.stopped_during_claim = threading.Event()

    def _claim_round(self, limit: int, cursor: bytes | None, seed: float) -> ClaimRound:
        found = super()._claim_round(limit, cursor, seed)
        if found.claims and self.token is not None:
            self.token.run_sync_soon(self._stop_now)
            self.stopped_during_claim.wait(5)
        return found

    def _stop_now(self) -> None:
        self.stop()
        self.stopped_during_claim.set()


def test_a_claim_made_as_the_consumer_stops_is_given_back(tmp_path: Path) -> None:
    db = keyspace.open(f"sqlite:///{tmp_path / 'q.db'}")
    app = quick.App()
    ran: list[Any] = []

    @app.job("noop")
    def noop(payload: Any, meta: quick.Meta) -> None:
        ran.append(payload)

    async def main() -> None:
        consumer = StoppingConsumer(db, app, ConsumerConfig(concurrency=2, cron=False))
        consumer.token = trio.lowlevel.current_trio_token()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(consumer.run)
                await trio.sleep(0.2)  # idle, waiting on its watch
                quick.enqueue(db, "q", "noop", 1)
        assert consumer.stopped_during_claim.is_set()

    trio.run(main)
    assert ran == []
    counts = quick.queue_counts(db, "q")
    assert (counts["ready"], counts["leased"]) == (1, 0)  # released, not held to expiry
    db.close()
