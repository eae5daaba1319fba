"""Nothing read from the store stops a worker.

Corrupt bytes, wrong-typed msgpack and keys that do not unpack are written straight
through the engine; the consumer must quarantine each (dead letter, set aside, repair)
and keep serving every other queue.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import trio

import quick
from consumer.metrics import ConsumerMetrics
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import CRON, CRON_DUE, POINTER_INDEX, POINTERS, QUEUE_LEASES, queue_keys
from keyspace.protocol import Database, Transaction
from quick import counters, pointers
from quick.jobs import Job, JobState
from tests.waiting import until

JUNK = b"\xff junk"


def _put(db: Database, key: bytes, value: bytes) -> None:
    db.transact(lambda tr: tr.set(key, value))


def _rewrite_job(db: Database, queue: str, job_id: str, **fields: Any) -> None:
    """Overwrite fields of a stored job record (bypassing every check)."""
    key = queue_keys(queue).job(job_id)

    def body(tr: Transaction) -> None:
        data = tr.get(key)
        assert data is not None
        record = unpack_value(data)
        record.update(fields)
        tr.set(key, pack_value(record))

    db.transact(body)


@pytest.mark.parametrize(
    "fields", [{"pr": "x"}, {"a": None}, {"v": "soon"}, {"t": 5}, {"x": [1]}, {"m": True}]
)
def test_job_from_value_refuses_wrong_types(fields: dict[str, Any]) -> None:
    job = Job(
        id="j", queue="q", topic="t", payload=None, priority=1, vis_ms=0, state=JobState.READY
    )
    record = unpack_value(job.to_value())
    record.update(fields)
    with pytest.raises(CorruptValue):
        Job.from_value("q", "j", pack_value(record))


def test_consumer_survives_every_kind_of_corrupt_metadata(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    app = quick.App()
    ran: list[str] = []

    @app.job("work")
    def work(payload: Any, meta: quick.Meta) -> None:
        ran.append(meta.job_id)

    good = [quick.enqueue(db, f"good-{i % 4}", "work", i) for i in range(12)]
    # Queues whose metadata is corrupt still hold good jobs that must run.
    repaired = {
        q: quick.enqueue(db, q, "work", q) for q in ("p-bad", "p-typed", "ql-bad", "ql-typed")
    }
    _put(db, POINTERS.pack(("p-bad",)), JUNK)
    _put(db, POINTERS.pack(("p-typed",)), pack_value({"v": "soon", "es": None}))
    _put(db, QUEUE_LEASES.pack(("ql-bad",)), JUNK)
    _put(db, QUEUE_LEASES.pack(("ql-typed",)), pack_value({"o": 5, "ex": "x", "rc": 3}))
    # Pointer-index keys that do not unpack, or unpack to the wrong types.
    bad_index = [
        POINTER_INDEX.raw + b"\x15\x01" + JUNK,
        POINTER_INDEX.pack((5,)),
        POINTER_INDEX.pack(("x", "q")),
        POINTER_INDEX.pack((5, 7)),
    ]
    for key in bad_index:
        _put(db, key, b"")
    # Job records whose fields decode but have the wrong types: dead-lettered.
    typed = [quick.enqueue(db, "typed", "work", i) for i in range(3)]
    for job_id, fields in zip(typed, [{"pr": "x"}, {"a": None}, {"v": "soon"}], strict=True):
        _rewrite_job(db, "typed", job_id, **fields)
    # A cron schedule missing fields, due now; a counter of the wrong width.
    _put(db, CRON.pack(("broken",)), pack_value({"cr": "* * * * *"}))
    _put(db, CRON_DUE.pack((0, "broken")), b"")
    _put(db, queue_keys("good-1").counter("ready"), b"\x01\x02")

    every = good + list(repaired.values())
    metrics = ConsumerMetrics(depth_interval=0.05)

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=4), metrics=metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: set(every) <= set(ran), 30.0)
            await until(lambda: len(quick.list_dead(db, "typed")) == 3, 30.0)
            await trio.sleep(1.2)  # a cron activation and several depth refreshes more
            assert not consumer._stopping.is_set()  # still serving
            consumer.stop()
        return consumer

    with caplog.at_level(logging.WARNING):
        trio.run(main)
    assert {quick.job_state(db, j) for j in every} == {quick.JobState.COMPLETED}
    assert {quick.job_state(db, j) for j in typed} == {quick.JobState.DEAD}
    # Named by key in the logs; the pointer-index junk and the cron due entry are gone.
    text = caplog.text
    assert "queue pointer  queue='p-bad'" in text
    assert "queue lease  queue='ql-typed'" in text
    assert "cron schedule  name='broken'" in text
    left = db.transact(lambda tr: tr.get_many([*bad_index, CRON_DUE.pack((0, "broken"))]))
    assert left == [None] * 5
    # Atomic adds pad the short counter back to 8 bytes (a wrong count, that
    # ``quick check --deep --repair`` rewrites); reading it never raised meanwhile.
    assert set(quick.queue_counts(db, "good-1")) == {"scheduled", "ready", "leased", "dead"}


def test_pointers_repair_a_corrupt_pointer_in_the_claim(db: Database) -> None:
    job = quick.enqueue(db, "q", "t", None)
    _put(db, POINTERS.pack(("q",)), JUNK)
    (claim,) = quick.claim(db, "q", "me")
    assert claim.job_id == job
    pointer = db.transact(lambda tr: pointers.read_pointer(tr, "q"))
    assert pointer is not None  # rewritten from the queue's indexes


def test_counters_read_counts_skips_a_counter_of_the_wrong_width(db: Database) -> None:
    quick.enqueue(db, "q", "t", None)
    _put(db, queue_keys("q").counter("scheduled"), b"\x01")
    counts = db.transact(lambda tr: counters.read_counts(tr, "q"))
    assert counts["ready"] == 1
    assert counts["scheduled"] == 0


# -- item 2: a job never vanishes ------------------------------------------------------------


def test_claim_reindexes_a_record_whose_index_entry_disagrees(db: Database) -> None:
    job_id = quick.enqueue(db, "q", "t", None, priority=5)
    keys = queue_keys("q")

    def misplace(tr: Transaction) -> None:
        ((key, _),) = tr.get_range(*keys.ready_range())
        priority, vis_ms, _ = keys.unpack_ready(key)
        tr.clear(key)
        tr.set(keys.ready(priority + 1, vis_ms, job_id), b"")  # a stray entry

    db.transact(misplace)
    claimed = quick.claim(db, "q", "me") or quick.claim(db, "q", "me")
    assert [c.job_id for c in claimed] == [job_id]
    quick.complete(db, claimed[0])
    assert quick.job_state(db, job_id) is quick.JobState.COMPLETED
    assert quick.queue_counts(db, "q") == {"scheduled": 0, "ready": 0, "leased": 0, "dead": 0}


def test_claim_reindexes_a_scheduled_entry_with_the_wrong_time(db: Database) -> None:
    job_id = quick.enqueue(db, "q", "t", None, delay=60)
    keys = queue_keys("q")

    def misplace(tr: Transaction) -> None:
        ((key, _),) = tr.get_range(*keys.scheduled_range())
        tr.clear(key)
        tr.set(keys.scheduled(1, job_id), b"")  # due long ago, but the record says later
        pointers.ensure_visible(tr, "q", 1)

    db.transact(misplace)
    assert quick.claim(db, "q", "me") == []
    rows = db.transact(lambda tr: tr.get_range(*keys.scheduled_range()))
    assert [keys.unpack_scheduled(k)[1] for k, _ in rows] == [job_id]
    assert keys.unpack_scheduled(rows[0][0])[0] > 1  # back at the record's own time
    assert [j.id for j in quick.list_jobs(db, "q")] == [job_id]


def test_claim_drops_an_entry_without_a_record_and_fixes_the_count(db: Database) -> None:
    keys = queue_keys("q")
    real = quick.enqueue(db, "q", "t", None)

    def orphan(tr: Transaction) -> None:
        tr.set(keys.ready(0, 0, "ghost"), b"")
        counters.bump(tr, keys, JobState.READY)

    db.transact(orphan)
    claimed = quick.claim(db, "q", "me", limit=5)
    assert [c.job_id for c in claimed] == [real]
    assert quick.queue_counts(db, "q")["ready"] == 0
    assert db.transact(lambda tr: tr.get(keys.ready(0, 0, "ghost"))) is None


# -- item 3: stored data never names code to import -------------------------------------------


@pytest.mark.parametrize("module", ["this", "tests.integration.never_imported"])
def test_extension_for_refuses_unregistered_modules_and_dead_letters(
    db: Database, module: str
) -> None:
    assert module not in sys.modules
    job_id = quick.enqueue(db, "q", "t", None)
    _rewrite_job(db, "q", job_id, x={"mod": module})
    app = quick.App()

    @app.job("t")
    def handler(payload: Any, meta: quick.Meta) -> None:
        pass

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: quick.job_state(db, job_id) is quick.JobState.DEAD, 30.0)
            consumer.stop()

    trio.run(main)
    assert module not in sys.modules
    (dead,) = quick.list_dead(db, "q")
    assert "no job extension" in (dead.error or "")
