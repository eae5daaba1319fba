"""A job naming a job extension this process did not register is dead-lettered without
running its handler, named by its key, and the consumer keeps serving."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.codec import pack_value, unpack_value
from keyspace.layout import queue_keys
from keyspace.protocol import Database, Transaction
from tests.waiting import until


def _name_extension(db: Database, queue: str, job_id: str, module: str) -> None:
    """Make the stored job name ``module`` as its extension (bypassing every check)."""
    key = queue_keys(queue).job(job_id)

    def body(tr: Transaction) -> None:
        data = tr.get(key)
        assert data is not None
        tr.set(key, pack_value({**unpack_value(data), "x": {"mod": module}}))

    db.transact(body)


@pytest.mark.parametrize("kind", ["sync", "async", "transactional"])
def test_consumer_dead_letters_a_job_of_an_unknown_extension_without_running_it(
    db: Database, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    module = "tests.integration.never_imported"
    assert module not in sys.modules
    stray = quick.enqueue(db, "q", "t", "stray")
    _name_extension(db, "q", stray, module)
    plain = [quick.enqueue(db, "q", "t", i) for i in range(3)]
    app = quick.App()
    ran: list[Any] = []

    if kind == "sync":

        @app.job("t")
        def handler(payload: Any, meta: quick.Meta) -> None:
            ran.append(payload)

    elif kind == "async":

        @app.job("t")
        async def handler_async(payload: Any, meta: quick.Meta) -> None:
            ran.append(payload)

    else:

        @app.job("t")
        def handler_tr(tr: Transaction, payload: Any, meta: quick.Meta) -> None:
            ran.append(payload)

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: quick.job_state(db, stray) is quick.JobState.DEAD, 30.0)
            await until(
                lambda: all(quick.job_state(db, j) is quick.JobState.COMPLETED for j in plain),
                30.0,
            )
            # Still serving after it: a job enqueued now runs too.
            late = quick.enqueue(db, "q", "t", "late")
            await until(lambda: quick.job_state(db, late) is quick.JobState.COMPLETED, 30.0)
            consumer.stop()

    with caplog.at_level(logging.WARNING, logger="quick"):
        trio.run(main)
    assert module not in sys.modules
    assert "stray" not in ran, "the handler ran for a job of an unknown extension"
    assert set(ran) == {0, 1, 2, "late"}  # a transactional handler may run again on a retry
    (dead,) = quick.list_dead(db, "q")
    assert dead.job_id == stray
    assert "no job extension" in (dead.error or "")
    named = [r.getMessage() for r in caplog.records if stray in r.getMessage()]
    assert named, "no log line names the job"
    assert f"job  queue='q'  job_id='{stray}'" in named[0]
