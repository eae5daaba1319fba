"""quick.aio and workflow.aio refuse bad arguments before writing, and never block the loop.

Each test runs under asyncio and under trio.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import quick
import quick.aio
import workflow.aio
from keyspace.protocol import Database
from quick.aio import AsyncTransaction
from workflow import Workflow

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def everything(db: Database) -> list[tuple[bytes, bytes]]:
    return db.transact(lambda tr: tr.get_range(b"", b"\xff"))


def sync_body(tr: Any) -> None:
    tr.set(b"k", b"v")


async def joined_enqueue_of_a_bad_topic(tr: AsyncTransaction) -> None:
    tr.set(b"app-key", b"written first")
    await quick.aio.enqueue(tr, "q", 7, {})  # type: ignore[arg-type]


BAD: list[tuple[str, str, Callable[[Database], Awaitable[Any]]]] = [
    ("enqueue-db", "db_or_tr", lambda db: quick.aio.enqueue("db", "q", "t", {})),  # type: ignore[arg-type]
    ("enqueue-queue", "queue_id", lambda db: quick.aio.enqueue(db, "", "t", {})),
    ("enqueue-priority", "priority", lambda db: quick.aio.enqueue(db, "q", "t", {}, priority="1")),  # type: ignore[arg-type]
    ("enqueue-delay", "delay", lambda db: quick.aio.enqueue(db, "q", "t", {}, delay=-1)),
    ("enqueue-payload", "payload", lambda db: quick.aio.enqueue(db, "q", "t", object())),
    ("many-jobs", "jobs", lambda db: quick.aio.enqueue_many(db, "jobs")),  # type: ignore[arg-type]
    (
        "many-spec",
        "jobs[1]",
        lambda db: quick.aio.enqueue_many(db, [{"queue_id": "q", "topic": "t"}, {"topic": "t"}]),
    ),
    ("state-id", "job_id", lambda db: quick.aio.job_state(db, 5)),  # type: ignore[arg-type]
    ("cancel-id", "job_id", lambda db: quick.aio.cancel(db, "")),
    ("cancel-db", "db_or_tr", lambda db: quick.aio.cancel(None, "j")),  # type: ignore[arg-type]
    ("transact-db", "db", lambda db: quick.aio.transact("db", joined_enqueue_of_a_bad_topic)),  # type: ignore[arg-type]
    ("transact-fn", "fn", lambda db: quick.aio.transact(db, sync_body)),  # type: ignore[arg-type]
    ("transact-joined", "topic", lambda db: quick.aio.transact(db, joined_enqueue_of_a_bad_topic)),
    ("start-wf", "wf", lambda db: workflow.aio.start_run(db, "wf", {}, queue_id="q")),  # type: ignore[arg-type]
    (
        "start-queue",
        "queue_id",
        lambda db: workflow.aio.start_run(db, Workflow("w").external("a"), {}, queue_id=""),
    ),
    ("signal-run", "run_id", lambda db: workflow.aio.signal(db, 3, "a")),  # type: ignore[arg-type]
    ("signal-step", "step", lambda db: workflow.aio.signal(db, "r", "")),
]


@pytest.mark.parametrize(("field", "call"), [(f, c) for _, f, c in BAD], ids=[n for n, _, _ in BAD])
async def test_aio_bad_input_is_refused_before_writing(
    db: Database, field: str, call: Callable[[Database], Awaitable[Any]]
) -> None:
    before = everything(db)
    with pytest.raises((quick.InvalidArgument, quick.InvalidPayload)) as refused:
        await call(db)
    assert getattr(refused.value, "field", None) == field
    assert everything(db) == before


async def ticks_during(call: Callable[[], Awaitable[Any]], period: float = 0.01) -> int:
    """How many times a ticker on the same loop ticked while ``call`` ran."""
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await anyio.sleep(period)
            ticks += 1

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.sleep(0)  # the ticker starts before the call
        start = ticks
        await call()
        during = ticks - start
        done.set()
    return during


async def test_aio_never_blocks_the_loop_during_a_slow_commit(tmp_path: Path) -> None:
    with quick.open(f"sqlite:///{tmp_path / 'slow.db'}?latency=commit:200") as db:
        assert await ticks_during(lambda: quick.aio.enqueue(db, "q", "t", {})) >= 5

        async def body(tr: AsyncTransaction) -> None:
            tr.set(b"app", b"1")
            await quick.aio.enqueue(tr, "q", "t", {}, job_id="joined")

        assert await ticks_during(lambda: quick.aio.transact(db, body)) >= 5
        assert await quick.aio.job_state(db, "joined") is quick.JobState.READY


async def test_aio_never_blocks_the_loop_during_slow_reads(tmp_path: Path) -> None:
    with quick.open(f"sqlite:///{tmp_path / 'slow.db'}?latency=grv:100,read:100") as db:

        async def body(tr: AsyncTransaction) -> bytes | None:
            return await tr.get(b"app")

        assert await ticks_during(lambda: quick.aio.transact(db, body)) >= 5
        assert await ticks_during(lambda: quick.aio.job_state(db, "nothing")) >= 5
