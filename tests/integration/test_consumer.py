"""The trio consumer: handlers of every kind, lease loss, timeouts, graceful stop.

Every test runs on each engine of the seam, the fault-injecting one included: there
claims, heartbeats, settles and releases meet 1020, 1007 and 1021 (before and after
applying) and are retried, so the assertions say what must hold whatever the commits
did. Transactional handlers take effect exactly once; plain handlers run at least once,
and more than once only after an unknown commit result.
"""

from __future__ import annotations

import struct
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

import quick
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from quick.jobs import now_ms
from tests.waiting import until

ONE = struct.pack("<q", 1)
FINISHED = {quick.JobState.COMPLETED, quick.JobState.DEAD}


@pytest.fixture
def tag() -> str:
    """A prefix for the test's queue names (the fdb engine shares one keyspace)."""
    return uuid.uuid4().hex[:8]


def _injected(db: Database) -> dict[int, int]:
    """Faults the wrapper injected so far, by error code (none on the other engines)."""
    injected: dict[int, int] = getattr(db, "injected", {})
    return injected


def _drain_every_kind(db: Database, space: Subspace, tag: str, per_topic: int) -> None:
    """Run ``per_topic`` jobs of each handler kind through a consumer and check each
    job's fate: completed (dead-lettered for ``broken``), a transactional handler's
    effect applied exactly once, a plain handler run at least once, and more than once
    only when an unknown commit result was injected."""
    app = quick.App()
    runs: list[str] = []  # the job id of every run of a plain handler, sync or async

    @app.job("sync")
    def sync_handler(payload: Any, meta: quick.Meta) -> None:
        runs.append(meta.job_id)

    @app.job("async", loop="trio")
    async def async_handler(payload: Any, meta: quick.Meta) -> None:
        await trio.sleep(0)
        runs.append(meta.job_id)

    @app.job("tx")
    def tx_handler(tr: Transaction, payload: Any, meta: quick.Meta) -> None:
        tr.add(space.pack(("effect", meta.job_id)), ONE)

    @app.job("broken", max_attempts=1)
    def broken(payload: Any, meta: quick.Meta) -> None:
        runs.append(meta.job_id)
        raise ValueError("nope")

    queues = [f"{tag}-{i}" for i in range(5)]
    ids: dict[str, list[str]] = {"sync": [], "async": [], "tx": [], "broken": []}
    for i in range(per_topic):
        for topic, made in ids.items():
            made.append(quick.enqueue(db, queues[i % 5], topic, i))
    every = [job for made in ids.values() for job in made]

    def settled() -> bool:
        return all(quick.job_state(db, job) in FINISHED for job in every)

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=4, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(settled, 30.0)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    states = {job: quick.job_state(db, job) for job in every}
    assert states == {
        job: quick.JobState.DEAD if job in ids["broken"] else quick.JobState.COMPLETED
        for job in every
    }
    dead = [d for queue in queues for d in quick.list_dead(db, queue)]
    assert sorted((d.job_id, d.error) for d in dead) == sorted(
        (job, "ValueError: nope") for job in ids["broken"]
    )
    # Transactional handlers: each effect applied exactly once, faults or not.
    effects = db.transact(lambda tr: tr.get_range(*space.range(("effect",))))
    applied = {space.unpack(key)[1]: struct.unpack("<q", value)[0] for key, value in effects}
    assert applied == dict.fromkeys(ids["tx"], 1)
    # Plain handlers: every job ran; a second run only after an unknown commit result.
    counts = Counter(runs)
    assert set(counts) == set(ids["sync"] + ids["async"] + ids["broken"])
    repeated = {job: n for job, n in counts.items() if n > 1}
    if repeated:
        assert _injected(db).get(1021), f"ran twice without a 1021: {repeated}"
    else:
        # One run each, so one outcome each, however often the settling commit was retried.
        assert consumer.outcomes == {"completed": 3 * per_topic, "dead_lettered": per_topic}


def test_consumer_runs_sync_async_and_transactional_handlers(
    db: Database, engine: str, space: Subspace, tag: str
) -> None:
    _drain_every_kind(db, space, tag, per_topic=5)
    if engine == "faulty-sqlite":
        assert sum(_injected(db).values()) > 0, "the faulty engine injected nothing"


def test_consumer_settles_each_job_once_when_commits_often_report_unknown_results(
    tmp_path: Path, space: Subspace, tag: str
) -> None:
    # A quarter of all writing commits apply and then report 1021, another quarter
    # report it without applying: every retry path of claim, handler transaction and
    # settlement is taken many times over.
    url = f"sqlite:///{tmp_path / 'u.db'}?faults=commit_unknown_result:0.5&seed=7"
    with quick.open(url) as db:
        _drain_every_kind(db, space, tag, per_topic=25)
        assert _injected(db)[1021] >= 50


def test_consumer_lease_loss_cancels_the_handler(db: Database, tag: str) -> None:
    app = quick.App()
    started, finished = trio.Event(), []

    @app.job("slow", loop="trio")
    async def slow(payload: Any, meta: quick.Meta) -> None:
        started.set()
        await trio.sleep(30)
        finished.append(meta.job_id)

    queue = f"{tag}-q"
    job = quick.enqueue(db, queue, "slow", None)
    thief: list[quick.Claim] = []

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, lease_ms=300, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await started.wait()
            # Another consumer whose clock says the lease ran out takes the job over,
            # with a lease long enough that this consumer cannot claim it back.
            later = now_ms() + 60_000
            thief.extend(quick.claim(db, queue, "thief", lease_ms=60_000, now_ms=later))
            await until(lambda: consumer.outcomes["lease_lost"] == 1, 30.0)
            consumer.stop()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes == {"lease_lost": 1}
    assert finished == []
    # The consumer left the job to its new holder: not settled, not put back.
    (taken,) = thief
    held = quick.get_job(db, job)
    assert held is not None
    assert (held.owner, held.token, held.state, held.attempt) == (
        "thief",
        taken.token,
        quick.JobState.LEASED,
        2,
    )
    quick.complete(db, taken)
    assert quick.job_state(db, job) is quick.JobState.COMPLETED


def test_consumer_timeout_counts_as_a_failed_attempt(db: Database, tag: str) -> None:
    app = quick.App()

    @app.job("stuck", timeout=0.05, max_attempts=1, loop="trio")
    async def stuck(payload: Any, meta: quick.Meta) -> None:
        await trio.sleep(10)

    queue = f"{tag}-q"
    job = quick.enqueue(db, queue, "stuck", None)

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: consumer.outcomes["dead_lettered"] == 1, 30.0)
            consumer.stop()

    trio.run(main)
    (dead,) = quick.list_dead(db, queue)
    assert dead.job_id == job
    assert dead.error.startswith("TimeoutError")


def test_consumer_stop_lets_running_jobs_finish_and_leaves_the_rest(db: Database, tag: str) -> None:
    app = quick.App()
    release = trio.Event()
    running = trio.Event()

    @app.job("wait", loop="trio")
    async def wait(payload: Any, meta: quick.Meta) -> None:
        running.set()
        await release.wait()

    queue = f"{tag}-q"
    for i in range(10):
        quick.enqueue(db, queue, "wait", i)

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=1, cron=False, grace=5))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await running.wait()
            consumer.stop()
            await trio.sleep(0.05)
            release.set()
        return consumer

    consumer = trio.run(main)
    assert consumer.outcomes["completed"] == 1
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 9, "leased": 0, "dead": 0}


def test_consumer_stop_releases_claims_not_yet_started(db: Database, tag: str) -> None:
    app = quick.App()
    holder: list[Consumer] = []
    ran: list[str] = []

    @app.job("first", loop="trio")
    async def first(payload: Any, meta: quick.Meta) -> None:
        # Stop while the rest of the claimed batch is still on its way to the workers:
        # those claims are never started and must be given back at once.
        holder[0].stop()
        ran.append(meta.job_id)
        await trio.sleep(0)

    queue = f"{tag}-q"
    for i in range(10):
        quick.enqueue(db, queue, "first", i)

    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=10, batch_size=10, cron=False))
        holder.append(consumer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer.run)
        return consumer

    consumer = trio.run(main)
    # One claim of all ten (one for each idle slot): the first started, the nine not yet
    # started were released.
    assert consumer.outcomes == {"completed": 1, "released": 9}
    assert len(ran) == 1
    assert quick.queue_counts(db, queue) == {"scheduled": 0, "ready": 9, "leased": 0, "dead": 0}
    # Released claims are visible now, unowned, with their attempt refunded.
    waiting = quick.list_jobs(db, queue, limit=20)
    assert len(waiting) == 9
    assert {(job.state, job.owner, job.attempt) for job in waiting} == {
        (quick.JobState.READY, None, 0)
    }
    assert quick.job_state(db, ran[0]) is quick.JobState.COMPLETED


def test_consumer_round_retried_after_an_unknown_commit_result_keeps_its_claims(
    tmp_path: Path, tag: str
) -> None:
    """A claim round whose commit applied but reported 1021 hands its jobs to its retry:
    with a lease longer than the test may take, a job left leased by such a try would
    wait out its lease, and the drain would not finish."""
    url = f"sqlite:///{tmp_path / 'k.db'}?faults=commit_unknown_result:0.6&seed=3"
    app = quick.App()
    ran: list[str] = []

    @app.job("t")
    def handler(payload: Any, meta: quick.Meta) -> None:
        ran.append(meta.job_id)

    with quick.open(url) as db:
        every = [quick.enqueue(db, f"{tag}-{i % 20}", "t", i) for i in range(200)]

        def settled() -> bool:
            return all(quick.job_state(db, job) in FINISHED for job in every)

        async def main() -> None:
            config = ConsumerConfig(concurrency=8, lease_ms=600_000, cron=False)
            consumer = Consumer(db, app, config)
            async with trio.open_nursery() as nursery:
                await nursery.start(consumer.run)
                await until(settled, 60.0)
                consumer.stop()

        trio.run(main)
        assert _injected(db).get(1021, 0) >= 20
    assert set(ran) == set(every)
