"""An idle consumer's stall watch sleeps until a claim is dispatched.

It counted stalled slots twenty times a second whether or not anything was held, a
trio wake-up every 50 ms in every idle worker.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio

import keyspace
import quick
from consumer import runtime
from consumer.runtime import Consumer, ConsumerConfig


def test_idle_consumer_stall_watch_sleeps_until_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: list[int] = []
    real = runtime.stalled

    def counted(*args: Any) -> int:
        counts.append(1)
        return real(*args)

    monkeypatch.setattr(runtime, "stalled", counted)
    db = keyspace.open(f"sqlite:///{tmp_path / 'q.db'}")
    app = quick.App()
    ran = threading.Event()

    @app.job("noop")
    def noop(payload: Any, meta: quick.Meta) -> None:
        ran.set()

    async def main() -> int:
        consumer = Consumer(db, app, ConsumerConfig(cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await trio.sleep(0.5)
            idle = len(counts)
            quick.enqueue(db, "q", "noop", None)  # work wakes it, and it counts again
            with trio.fail_after(10):
                await trio.to_thread.run_sync(ran.wait, 10)
                while len(counts) == idle:
                    await trio.sleep(0.01)
            consumer.stop()
        return idle

    idle = trio.run(main)
    db.close()
    assert idle == 0
