"""quick.aio and workflow.aio on every engine, each under asyncio and under trio.

The async functions call the sync queue functions; these tests check that they do the
same thing awaited (ids, states, joining an async transaction), that an async
transaction commits its own keys and its jobs together or not at all under injected
faults, and that bad arguments are refused before anything is written.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import quick
import quick.aio
import workflow
import workflow.aio
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick.aio import AsyncTransaction
from workflow import Workflow

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs under asyncio and under trio."""
    return str(request.param)


def payload(db: Database, job_id: str) -> Any:
    job = quick.get_job(db, job_id)
    assert job is not None
    return job.payload


def counts(db: Database, queue: str) -> dict[str, int]:
    return {state: n for state, n in quick.queue_counts(db, queue).items() if n}


async def test_aio_enqueue_job_state_and_cancel(db: Database) -> None:
    job_id = await quick.aio.enqueue(db, "tenant-1", "email:send", {"to": "ada"}, priority=5)
    assert await quick.aio.job_state(db, job_id) is quick.JobState.READY
    assert payload(db, job_id) == {"to": "ada"}
    again = await quick.aio.enqueue(db, "tenant-1", "email:send", {}, job_id=job_id)
    assert again == job_id
    assert await quick.aio.cancel(db, job_id) is True
    assert await quick.aio.job_state(db, job_id) is quick.JobState.CANCELLED
    assert await quick.aio.job_state(db, "no-such-job") is None
    assert await quick.aio.cancel(db, "no-such-job") is False


async def test_aio_enqueue_takes_the_sync_options_that_relate_jobs(db: Database) -> None:
    first = await quick.aio.enqueue(db, "tenant-9", "t", 1)
    after = await quick.aio.enqueue(db, "tenant-9", "t", 2, depends_on=iter([first]))
    assert await quick.aio.job_state(db, after) is quick.JobState.WAITING
    debounced = {
        await quick.aio.enqueue(db, "tenant-9", "t", n, debounce=60, key="d") for n in range(3)
    }
    assert len(debounced) == 1
    assert payload(db, debounced.pop()) == 2
    outcomes = [
        await quick.aio.enqueue(
            db, "tenant-9", "t", n, throttle=(1, 3600), key="k", when_throttled="drop"
        )
        for n in range(2)
    ]
    assert [o.outcome for o in outcomes] == ["enqueued", "dropped"]


async def test_aio_enqueue_refuses_bad_relations_before_writing(db: Database) -> None:
    for options in (
        {"depends_on": 5},
        {"depends_on": "job-a"},
        {"debounce": 60},
        {"throttle": (0, 60), "key": "k"},
    ):
        with pytest.raises(quick.InvalidArgument):
            await quick.aio.enqueue(db, "tenant-10", "t", 0, **options)
    assert counts(db, "tenant-10") == {}


async def test_aio_enqueue_many_keeps_order(db: Database) -> None:
    specs = [{"queue_id": "tenant-2", "topic": "t", "payload": n} for n in range(5)]
    ids = await quick.aio.enqueue_many(db, specs)
    assert len(set(ids)) == 5
    assert [payload(db, i) for i in ids] == list(range(5))
    assert counts(db, "tenant-2") == {"ready": 5}


async def test_aio_transact_commits_app_keys_and_jobs_together(
    db: Database, space: Subspace
) -> None:
    order = space.pack(("order", "o-1"))
    job_id = f"book:{uuid.uuid4().hex}"  # made before the retry loop

    async def place(tr: AsyncTransaction, amount: int) -> str:
        assert await tr.get(order) is None or True  # an awaited read joins the conflict set
        tr.set(order, b"placed")
        joined = await quick.aio.enqueue(
            tr, "tenant-3", "ledger:book", {"n": amount}, job_id=job_id
        )
        more = await quick.aio.enqueue_many(
            tr, [{"queue_id": "tenant-3", "topic": "t", "job_id": job_id + ":2"}]
        )
        assert more == [job_id + ":2"]
        return joined

    assert await quick.aio.transact(db, place, 12) == job_id
    assert db.transact(lambda tr: tr.get(order)) == b"placed"
    assert await quick.aio.job_state(db, job_id) is quick.JobState.READY
    assert counts(db, "tenant-3") == {"ready": 2}  # retried under faults: no duplicate


async def test_aio_transact_rolls_back_both_on_error(db: Database, space: Subspace) -> None:
    order = space.pack(("order", "o-2"))

    async def place(tr: AsyncTransaction) -> None:
        tr.set(order, b"placed")
        await quick.aio.enqueue(tr, "tenant-4", "ledger:book", {}, job_id="book:o-2")
        raise RuntimeError("the handler failed after enqueueing")

    with pytest.raises(RuntimeError, match="handler failed"):
        await quick.aio.transact(db, place)
    assert db.transact(lambda tr: tr.get(order)) is None
    assert await quick.aio.job_state(db, "book:o-2") is None
    assert counts(db, "tenant-4") == {}


async def test_aio_transaction_reads_see_own_writes_and_snapshot(
    db: Database, space: Subspace
) -> None:
    a, b = space.pack(("a",)), space.pack(("b",))

    async def body(tr: AsyncTransaction) -> list[Any]:
        tr.set(a, b"1")
        tr.add(b, (2).to_bytes(8, "little"))
        return [
            await tr.get(a),
            await tr.snapshot.get(a),
            await tr.get_many([a, b]),
            [k for k, _ in await tr.get_range_startswith(space.raw)],
            [k for k, _ in await tr.snapshot.get_range(*space.range())],
        ]

    got = await quick.aio.transact(db, body)
    assert got[:3] == [b"1", b"1", [b"1", (2).to_bytes(8, "little")]]
    assert got[3] == got[4] == [a, b]


async def test_aio_workflow_start_run_and_signal(db: Database) -> None:
    wf = Workflow("aio.flow").external("approve")
    run_id = await workflow.aio.start_run(
        db, wf, {"n": 1}, queue_id="tenant-5", idempotency_key="k-1"
    )
    assert (
        await workflow.aio.start_run(db, wf, {}, queue_id="tenant-5", idempotency_key="k-1")
        == run_id
    )
    await workflow.aio.signal(db, run_id, "approve", {"by": "ada"})
    assert workflow.inspect_run(db, run_id).steps["approve"].status == "succeeded"

    async def start_in(tr: AsyncTransaction) -> str:
        return await workflow.aio.start_run(tr, wf, {}, queue_id="tenant-5", idempotency_key="k-2")

    second = await quick.aio.transact(db, start_in)
    assert workflow.inspect_run(db, second).steps["approve"].status not in ("succeeded", "skipped")


async def test_aio_transact_retries_without_duplicates(
    db: Database, engine: str, space: Subspace
) -> None:
    total = space.pack(("total",))
    tries = [0]

    async def place(tr: AsyncTransaction, order_id: str, job_id: str) -> None:
        tries[0] += 1
        marker = space.pack(("order", order_id))
        if await tr.get(marker) is not None:
            return  # an earlier try committed (after commit_unknown_result)
        tr.set(marker, b"placed")
        tr.add(total, (1).to_bytes(8, "little"))
        await quick.aio.enqueue(tr, "tenant-6", "ledger:book", {"order": order_id}, job_id=job_id)

    orders = [f"o-{n}" for n in range(40)]
    for order_id in orders:
        await quick.aio.transact(db, place, order_id, f"book:{order_id}")  # ids before the loop
    for n in range(40):
        await quick.aio.enqueue(db, "tenant-6", "plain", n)  # its own ids, its own loop
    assert int.from_bytes(db.transact(lambda tr: tr.get(total)), "little") == 40
    assert counts(db, "tenant-6") == {"ready": 80}
    if engine == "faulty-sqlite":
        assert tries[0] > len(orders)  # the fault injector made some tries fail
