"""Job results on every engine: stored with the finished job, read and waited for by
``quick.result``, refused when they cannot be stored, purged with the tombstone."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest
import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.layout import JOB_DIRECTORY, RESULTS
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from quick.outcomes import RESULT_BYTES_PER_COMMIT, Attempt, settle_batch
from quick.results import MAX_RESULT_BYTES, PENDING, look_many
from quick.testing import drain


@pytest.fixture
def queue() -> str:
    """A queue name unique to the test (the fdb engine shares one keyspace)."""
    return f"r-{uuid.uuid4().hex[:8]}"


def stored_result(db: Database, job_id: str) -> bytes | None:
    return db.transact(lambda tr: tr.get(RESULTS.pack((job_id,))))


def make_app(space: Subspace) -> quick.App:
    app = quick.App()

    @app.job("add")
    def add(payload: Any, meta: quick.Meta) -> Any:
        return {"sum": payload[0] + payload[1], "by": meta.job_id}

    @app.job("nothing")
    def nothing(payload: Any, meta: quick.Meta) -> None:
        return None

    @app.job("async")
    async def in_trio(payload: Any, meta: quick.Meta) -> Any:
        await trio.sleep(0)
        return [payload, "async"]

    @app.job("tx")
    def tx(tr: Transaction, payload: Any, meta: quick.Meta) -> Any:
        tr.set(space.pack(("effect", meta.job_id)), b"1")
        return f"tx:{payload}"

    @app.job("tx-unstorable", max_attempts=1)
    def tx_unstorable(tr: Transaction, payload: Any, meta: quick.Meta) -> Any:
        tr.set(space.pack(("effect", meta.job_id)), b"1")
        return {1, 2}  # a set: msgpack cannot encode it

    @app.job("huge", max_attempts=2)
    def huge(payload: Any, meta: quick.Meta) -> Any:
        return b"x" * VALUE_LIMIT

    @app.job("unstorable", max_attempts=1)
    def unstorable(payload: Any, meta: quick.Meta) -> Any:
        return object()

    @app.job("async-unstorable", max_attempts=1)
    async def async_unstorable(payload: Any, meta: quick.Meta) -> Any:
        return {"at": object()}

    @app.job("broken", max_attempts=1)
    def broken(payload: Any, meta: quick.Meta) -> Any:
        raise ValueError(f"broken {payload}")

    @app.job("discard")
    def discard(payload: Any, meta: quick.Meta) -> Any:
        raise quick.Discard("not wanted")

    return app


def test_result_of_sync_async_and_transactional_handlers(
    db: Database, space: Subspace, queue: str
) -> None:
    app = make_app(space)
    add = quick.enqueue(db, queue, "add", [2, 3])
    nothing = quick.enqueue(db, queue, "nothing", 0)
    in_trio = quick.enqueue(db, queue, "async", 7)
    tx = quick.enqueue(db, queue, "tx", 9)
    drain(db, app)
    assert quick.result(db, add) == {"sum": 5, "by": add}
    assert quick.result(db, in_trio) == [7, "async"]
    assert quick.result(db, tx) == "tx:9"
    assert quick.result(db, nothing) is None
    # A None result writes nothing beside the tombstone.
    assert stored_result(db, nothing) is None
    assert stored_result(db, add) is not None


def test_result_waits_for_a_job_enqueued_in_a_transaction(db: Database, queue: str) -> None:
    app = make_app(Subspace(("unused",)))
    job_id = db.transact(lambda tr: quick.enqueue(tr, queue, "add", [1, 1]))
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(quick.result(db, job_id, timeout=60)))
    waiter.start()
    drain(db, app)
    waiter.join(60)
    assert got == [{"sum": 2, "by": job_id}]


def test_result_times_out_on_an_unfinished_job(db: Database, queue: str) -> None:
    job_id = quick.enqueue(db, queue, "add", [1, 1])
    with pytest.raises(quick.ResultTimeout) as raised:
        quick.result(db, job_id, timeout=0.05)
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.job_id == job_id
    with pytest.raises(quick.ResultTimeout):
        quick.result(db, job_id, timeout=0)


def test_result_raises_for_jobs_that_finished_without_one(
    db: Database, space: Subspace, queue: str
) -> None:
    app = make_app(space)
    broken = quick.enqueue(db, queue, "broken", "b")
    discarded = quick.enqueue(db, queue, "discard", 0)
    cancelled = quick.enqueue(db, queue, "add", [0, 0], delay=3600)
    assert quick.cancel(db, cancelled)
    drain(db, app)
    with pytest.raises(quick.JobDeadLettered) as dead:
        quick.result(db, broken)
    assert dead.value.error == "ValueError: broken b"
    with pytest.raises(quick.JobDiscarded) as gone:
        quick.result(db, discarded)
    assert gone.value.reason == "not wanted"
    with pytest.raises(quick.JobCancelled):
        quick.result(db, cancelled)
    with pytest.raises(quick.JobNotFound, match="never enqueued"):
        quick.result(db, "no-such-job")
    for error in (dead.value, gone.value):
        assert isinstance(error, quick.ResultUnavailable)
        assert isinstance(error, quick.QuickError)


class Untouchable:
    """A database that fails any use: bad arguments must be refused before it is used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name}) before the arguments were checked")


@pytest.mark.parametrize(
    ("job_id", "timeout", "field"),
    [
        ("", None, "job_id"),
        (None, None, "job_id"),
        (42, None, "job_id"),
        ("x" * 300, None, "job_id"),
        ("ok", -1, "timeout"),
        ("ok", float("nan"), "timeout"),
        ("ok", "5", "timeout"),
        ("ok", True, "timeout"),
    ],
)
def test_result_refuses_malformed_arguments_before_reading(
    job_id: Any, timeout: Any, field: str
) -> None:
    with pytest.raises(quick.InvalidArgument) as raised:
        quick.result(Untouchable(), job_id, timeout=timeout)  # type: ignore[arg-type]
    assert raised.value.field == field


def test_unstorable_results_fail_the_attempt_as_a_handler_error(
    db: Database, space: Subspace, queue: str
) -> None:
    app = make_app(space)
    huge = quick.enqueue(db, queue, "huge", 0)
    unstorable = quick.enqueue(db, queue, "unstorable", 0)
    tx = quick.enqueue(db, queue, "tx-unstorable", 0)
    drain(db, app, with_scheduled=True)
    with pytest.raises(quick.JobDeadLettered) as too_large:
        quick.result(db, huge)
    assert "result" in too_large.value.error
    assert str(MAX_RESULT_BYTES) in too_large.value.error
    (letter,) = [d for d in quick.list_dead(db, queue) if d.job_id == huge]
    assert letter.job is not None
    assert letter.job.attempt == 2
    with pytest.raises(quick.JobDeadLettered, match="result: cannot encode as msgpack"):
        quick.result(db, unstorable)
    with pytest.raises(quick.JobDeadLettered, match="result: cannot encode as msgpack"):
        quick.result(db, tx)
    # The transactional handler's writes did not commit with the refused result.
    assert db.transact(lambda tr: tr.get(space.pack(("effect", tx)))) is None


def test_purge_removes_the_result_with_the_tombstone(
    db: Database, space: Subspace, queue: str
) -> None:
    app = make_app(space)
    job_id = quick.enqueue(db, queue, "add", [4, 4])
    drain(db, app)
    assert quick.result(db, job_id)["sum"] == 8
    assert quick.purge_finished(db, older_than_ms=-60_000) >= 1
    assert stored_result(db, job_id) is None
    assert db.transact(lambda tr: tr.get(JOB_DIRECTORY.pack((job_id,)))) is None
    with pytest.raises(quick.JobNotFound):
        quick.result(db, job_id)
    # The id is free again: a new job under it has its own result.
    assert quick.enqueue(db, queue, "add", [1, 0], job_id=job_id) == job_id
    drain(db, app)
    assert quick.result(db, job_id)["sum"] == 1


def test_corrupt_result_is_named_by_its_key(
    db: Database, space: Subspace, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(space)
    job_id = quick.enqueue(db, queue, "add", [1, 2])
    other = quick.enqueue(db, queue, "add", [3, 4])
    drain(db, app)
    db.transact(lambda tr: tr.set(RESULTS.pack((job_id,)), b"\x01\xc1garbage"))
    caplog.set_level(logging.WARNING, "quick.store")
    with pytest.raises(quick.CorruptResult) as raised:
        quick.result(db, job_id)
    assert f"job result  job_id={job_id!r}" in raised.value.key
    assert raised.value.key in caplog.text
    assert quick.result(db, other)["sum"] == 7  # the rest are served


def test_manual_complete_stores_a_result_and_refuses_a_bad_one(db: Database, queue: str) -> None:
    job_id = quick.enqueue(db, queue, "manual", 0)
    (claim,) = quick.claim(db, queue, "me")
    with pytest.raises(quick.InvalidPayload):
        quick.complete(db, claim, result=object())
    assert quick.job_state(db, job_id) is quick.JobState.LEASED  # nothing written
    assert quick.complete(db, claim, result=("a", 1)) is True
    assert quick.result(db, job_id) == ["a", 1]


def test_a_batch_of_large_results_commits_in_parts(db: Database, queue: str) -> None:
    # 120 results of ~95 kB are ~11 MB: over the transaction limit in one commit.
    count = 120
    quick.enqueue_many(
        db, [{"queue_id": queue, "topic": "big", "payload": i} for i in range(count)]
    )
    claims = quick.claim(db, queue, "me", limit=count)
    config = quick.JobConfig(topic="big", handler=lambda payload, meta: None)
    assert count * 95_000 > 5 * RESULT_BYTES_PER_COMMIT
    attempts = [Attempt(c, config, None, bytes([c.payload % 256]) * 95_000) for c in claims]
    assert settle_batch(db, attempts) == [quick.Outcome.COMPLETED] * count
    for claim in claims[:: count // 4]:
        assert quick.result(db, claim.job_id) == bytes([claim.payload % 256]) * 95_000


def test_result_from_a_running_consumer(db: Database, space: Subspace, queue: str) -> None:
    app = make_app(space)
    ids = {
        "add": quick.enqueue(db, queue, "add", [5, 6]),
        "async": quick.enqueue(db, queue, "async", 1),
        "tx": quick.enqueue(db, queue, "tx", 2),
    }
    results: dict[str, Any] = {}

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=4, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            for topic, job_id in ids.items():
                results[topic] = await trio.to_thread.run_sync(quick.result, db, job_id, 30)
            consumer.stop()

    trio.run(main)
    assert results == {"add": {"sum": 11, "by": ids["add"]}, "async": [1, "async"], "tx": "tx:2"}


def test_migrate_moves_results_with_their_tombstones(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    # 60 results of ~60 kB: 3.6 MB, more than one write's share on the destination.
    ids = [quick.enqueue(source, "t1", "big", n, job_id=f"big-{n}") for n in range(60)]
    nothing = quick.enqueue(source, "t1", "none", 0)
    discarded = quick.enqueue(source, "t1", "none", 1)
    for claim in quick.claim(source, "t1", "op", limit=100):
        if claim.job_id == discarded:
            quick.discard(source, claim, "moved on")
        elif claim.job_id == nothing:
            quick.complete(source, claim)
        else:
            quick.complete(source, claim, result=[claim.payload, b"r" * 60_000])
    report = quick.migrate(source, dest, ["t1"])
    assert report.finished
    assert report.tombstones == 62
    for n, job_id in enumerate(ids):
        assert quick.result(dest, job_id, timeout=0) == [n, b"r" * 60_000]
    assert quick.result(dest, nothing, timeout=0) is None
    with pytest.raises(quick.JobDiscarded, match="moved on"):
        quick.result(dest, discarded, timeout=0)


def test_consumer_reports_why_a_result_was_refused(
    db: Database, space: Subspace, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(space)
    topics = ["unstorable", "async-unstorable", "huge"]
    ids = [quick.enqueue(db, queue, topic, 0) for topic in topics]
    caplog.set_level(logging.INFO, "quick.consumer")

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            for job_id in ids:
                with pytest.raises(quick.JobDeadLettered):
                    await trio.to_thread.run_sync(quick.result, db, job_id, 60)
            consumer.stop()

    trio.run(main)
    errors = {
        getattr(r, "job_id", None): getattr(r, "error", None)
        for r in caplog.records
        if getattr(r, "outcome", None) == "dead_lettered"
    }
    for job_id in ids[:2]:  # a sync handler's (thread lanes) and an async one's (runners)
        assert "InvalidPayload: result: cannot encode as msgpack" in (errors.get(job_id) or "")
    assert "InvalidArgument: result: encodes to" in (errors.get(ids[2]) or "")


def test_result_of_a_job_whose_queue_moved_names_the_move(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    job_id = quick.enqueue(source, "t1", "t", 0)
    assert quick.migrate(source, dest, ["t1"]).finished
    with pytest.raises(quick.QueueMoved) as moved:
        quick.result(source, job_id, timeout=0)
    assert moved.value.queue == "t1"
    with pytest.raises(quick.ResultTimeout):  # pending on the destination now
        quick.result(dest, job_id, timeout=0)
    (claim,) = quick.claim(dest, "t1", "w")
    quick.complete(dest, claim, result="there")
    assert quick.result(dest, job_id) == "there"


def test_look_many_answers_each_job_in_one_call(db: Database, space: Subspace, queue: str) -> None:
    app = make_app(space)
    done = quick.enqueue(db, queue, "add", [1, 1])
    broken = quick.enqueue(db, queue, "broken", "x")
    drain(db, app)
    pending = quick.enqueue(db, queue, "add", [0, 0], delay=3600)
    found = db.transact(look_many, [done, broken, pending, "nope"])
    assert found[0] == {"sum": 2, "by": done}
    assert isinstance(found[1], quick.JobDeadLettered)
    assert found[1].error == "ValueError: broken x"
    assert found[2] is PENDING
    assert isinstance(found[3], quick.JobNotFound)
