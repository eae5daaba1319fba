"""quick.migrate between two real sqlite files, in-process: what moves, what stays, and
what a crash between the copy's transactions leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

import quick
import workflow
from keyspace.layout import MIGRATING, QUEUES
from keyspace.protocol import Database
from quick import migration_jobs


def _queue_keys(db: Database, queue: str) -> list[bytes]:
    return db.transact(lambda tr: [k for k, _ in tr.get_range(*QUEUES[queue].range())])


def test_migrate_moves_jobs_dead_letters_unique_keys_and_cron(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    ids = [
        quick.enqueue(source, "t1", "record", {"n": n}, priority=n % 5, max_attempts=3)
        for n in range(450)
    ]
    later = quick.enqueue(source, "t1", "record", {"n": "later"}, delay=600, unique_key="u")
    doomed = quick.enqueue(source, "t1", "record", {"n": "doomed"}, priority=0)
    (claim,) = quick.claim(source, "t1", "op", limit=1)
    assert claim.job_id == doomed or claim.priority == 0
    quick.dead_letter(source, claim, "boom")
    quick.schedule(source, "tick", "*/5 * * * *", "t1", "record", {"n": "cron"})
    before = {job.id: job for job in quick.list_jobs(source, "t1", limit=1000)}

    report = quick.migrate(source, dest, ["t1"], batch_size=64)

    assert report.finished
    assert report.queues == ("t1",)
    assert (report.jobs, report.dead_letters, report.cron_schedules) == (451, 1, 1)
    assert report.unique_keys == 1
    after = {job.id: job for job in quick.list_jobs(dest, "t1", limit=1000)}
    assert after == before
    assert set(after) == (set(ids) | {later, doomed}) - {claim.job_id}
    assert quick.queue_counts(dest, "t1") == {"ready": 450, "scheduled": 1, "leased": 0, "dead": 1}
    assert [d.job_id for d in quick.list_dead(dest, "t1")] == [claim.job_id]
    assert [s.name for s in quick.list_schedules(dest)] == ["tick"]
    assert quick.list_schedules(source) == []
    assert _queue_keys(source, "t1") == []
    assert quick.job_state(source, ids[-1]) is quick.JobState.MOVED
    assert quick.enqueue(dest, "t1", "record", None, unique_key="u") == later
    with pytest.raises(quick.QueueMoved) as moved:
        quick.enqueue(source, "t1", "record", None)
    assert str(tmp_url(dest)) in moved.value.destination
    with pytest.raises(quick.QueueMoved):
        quick.enqueue_many(
            source, [{"queue_id": "t2", "topic": "x"}, {"queue_id": "t1", "topic": "x"}]
        )
    assert quick.list_jobs(source, "t2") == []  # the whole enqueue_many was refused


def tmp_url(db: Database) -> str:
    """The file path in a sqlite URL (the moved marker names it absolutely)."""
    return db.url.split("?")[0].removeprefix("sqlite:///")


def test_migrate_leaves_leased_jobs_until_they_settle(stores: tuple[Database, Database]) -> None:
    source, dest = stores
    for n in range(10):
        quick.enqueue(source, "t1", "record", {"n": n})
    claims = quick.claim(source, "t1", "worker", limit=3)
    first = quick.migrate(source, dest)
    assert (first.jobs, first.leased, first.remaining, first.finished) == (7, 3, 3, False)
    for claim in claims[:2]:
        quick.complete(source, claim)
    quick.release(source, claims[2])
    second = quick.migrate(source, dest)
    assert (second.jobs, second.remaining, second.finished) == (1, 0, True)
    assert len(quick.list_jobs(dest, "t1")) == 8
    assert _queue_keys(source, "t1") == []


def test_migrate_merges_into_a_destination_holding_the_queue(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    quick.enqueue(dest, "t1", "record", {"n": "theirs"}, job_id="shared")
    quick.enqueue(dest, "t1", "record", {"n": "dest-only"})
    quick.enqueue(source, "t1", "record", {"n": "ours"}, job_id="shared")
    quick.enqueue(source, "t1", "record", {"n": "source-only"})
    report = quick.migrate(source, dest)
    assert (report.jobs, report.duplicates, report.finished) == (1, 1, True)
    payloads = sorted(str(job.payload["n"]) for job in quick.list_jobs(dest, "t1"))
    assert payloads == ["dest-only", "source-only", "theirs"]
    assert quick.queue_counts(dest, "t1")["ready"] == 3


def test_migrate_refuses_a_queue_with_a_workflow_run_in_flight(
    stores: tuple[Database, Database],
) -> None:
    source, dest = stores
    flow = workflow.Workflow("wf").step("a", topic="a")
    run_id = workflow.start_run(source, flow, {}, queue_id="t1")
    quick.enqueue(source, "t2", "record", None)
    report = quick.migrate(source, dest)
    assert report.queues == ("t2",)
    assert [(r.queue, run_id in r.reason) for r in report.refused] == [("t1", True)]
    assert quick.enqueue(source, "t1", "record", None)  # not marked moved


def test_migrate_refuses_the_source_as_destination(tmp_path: Path) -> None:
    with (
        quick.open(f"sqlite:///{tmp_path / 'a.db'}") as one,
        quick.open(f"sqlite:///{tmp_path}/./a.db") as same,
        pytest.raises(quick.InvalidArgument),
    ):
        quick.migrate(one, same)


@pytest.mark.parametrize("crash_in", ["_delete", "_install"])
def test_migrate_rerun_after_a_crash_between_transactions_loses_and_duplicates_nothing(
    stores: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch, crash_in: str
) -> None:
    source, dest = stores
    ids = {quick.enqueue(source, "t1", "record", {"n": n}) for n in range(100)}
    real = getattr(migration_jobs, crash_in)
    calls = []

    def crash(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")  # the process dies between two transactions
        return real(*args, **kwargs)

    monkeypatch.setattr(migration_jobs, crash_in, crash)
    with pytest.raises(KeyboardInterrupt):
        quick.migrate(source, dest, batch_size=30)
    staged = dest.transact(lambda tr: tr.get_range(*MIGRATING.range()))
    assert staged, "the crash left a staged batch"
    monkeypatch.setattr(migration_jobs, crash_in, real)
    report = quick.migrate(source, dest, batch_size=30)
    assert report.finished
    moved = {job.id for job in quick.list_jobs(dest, "t1", limit=1000)}
    assert moved == ids
    assert quick.queue_counts(dest, "t1")["ready"] == 100
    assert dest.transact(lambda tr: tr.get_range(*MIGRATING.range())) == []
    assert _queue_keys(source, "t1") == []
