"""Listings read in pages, and reads fetched ahead, answer as one snapshot would.

``quick queues`` (:func:`quick.inspection.read_all_queues`), the schedule listings and
:func:`workflow.list_runs` read in pages of their own transactions; the overview's oldest
ready time reads a window of the ready index before its skip scan; its throughput figures
come from one read; settlement fetches records ahead with a snapshot ``get_many``. Each
must give the answer the one-transaction code gave, and a read served from what was
fetched ahead must still conflict as a read from the store does.
"""

from __future__ import annotations

import time

import pytest

import quick
import workflow
from keyspace.codec import CorruptValue
from keyspace.errors import StorageError
from keyspace.layout import CRON, FINISHED, POINTERS, queue_keys
from keyspace.protocol import Database, Transaction
from quick import inspection
from quick.cron import scan_schedules
from quick.inspection import READY_SCAN, count_finished, count_finished_windows, oldest_ready_ms

JUNK = b"\xff\xfe not a record"


def _put(db: Database, key: bytes, value: bytes) -> None:
    db.transact(lambda tr: tr.set(key, value))


def test_read_all_queues_pages_give_the_one_snapshot_listing(db: Database) -> None:
    quick.enqueue_many(db, [{"queue_id": f"q{i}", "topic": "t"} for i in range(7)])
    _put(db, POINTERS.pack(("q3x",)), JUNK)
    _put(db, queue_keys("q5").counter("ready"), b"\x01\x02")
    whole = inspection.read_queues(db)
    for page in (1, 2, 3, 100):
        paged = inspection.read_all_queues(db, page=page)
        assert paged.items == whole.items, page
        assert paged.skipped == whole.skipped, page
    assert [row["queue"] for row in whole.items] == [f"q{i}" for i in range(7)]
    assert {s.key for s in whole.skipped} == {
        POINTERS.pack(("q3x",)),
        queue_keys("q5").counter("ready"),
    }


def test_schedule_listings_in_pages_give_the_one_snapshot_listing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        quick.schedule(db, f"s{i}", "0 3 * * *", "q", "t", i)
    _put(db, CRON.pack(("s2x",)), JUNK)
    whole = db.transact(lambda tr: scan_schedules(tr))
    monkeypatch.setattr("quick.cron.SCHEDULE_PAGE", 2)
    assert scan_schedules(db) == whole
    listing = inspection.read_schedules(db)
    assert [item.name for item in listing.items] == [f"s{i}" for i in range(5)]
    assert [skipped.key for skipped in listing.skipped] == [CRON.pack(("s2x",))]
    with pytest.raises(CorruptValue, match="s2x"):
        quick.list_schedules(db)


def _reference_oldest(db: Database, queue: str) -> int:
    keys = queue_keys(queue)
    rows = db.transact(lambda tr: tr.get_range(*keys.ready_range()))
    return min(keys.unpack_ready(key)[1] for key, _ in rows)


@pytest.mark.parametrize("crowd", [10, READY_SCAN + 10])
def test_oldest_ready_ms_finds_the_oldest_job_behind_a_crowded_priority(
    db: Database, crowd: int
) -> None:
    quick.enqueue(db, "q", "t", "old", priority=9)
    time.sleep(0.005)
    quick.enqueue(db, "q", "t", "older priority, newer", priority=5)
    time.sleep(0.005)
    jobs = [{"queue_id": "q", "topic": "t", "priority": i % 3} for i in range(crowd)]
    quick.enqueue_many(db, jobs)
    now = quick.jobs.now_ms()
    found = oldest_ready_ms(db, "q", now)
    assert found == _reference_oldest(db, "q")
    (old,) = [j for j in quick.list_jobs(db, "q", limit=crowd + 2) if j.payload == "old"]
    assert found == old.vis_ms
    assert oldest_ready_ms(db, "empty", now) is None


def test_count_finished_windows_counts_every_window_from_one_read(db: Database) -> None:
    now = quick.jobs.now_ms()
    ages = {"m": (30_000, 3), "h": (1_800_000, 4), "d": (7_200_000, 5)}

    def fill(tr: Transaction) -> None:
        for tag, (age, count) in ages.items():
            for i in range(count):
                tr.set(FINISHED.pack((now - age, f"{tag}{i}")), b"")

    db.transact(fill)
    windows = [now - 60_000, now - 3_600_000, now - 86_400_000]
    assert count_finished_windows(db, windows) == [3, 7, 12]
    assert count_finished_windows(db, windows, limit=5) == [3, 5, 5]  # capped: "at least"
    assert count_finished_windows(db, []) == []
    assert count_finished(db, now - 60_000) == 3
    assert count_finished(db, now - 3_600_000, limit=6) == 6


def test_list_runs_in_pages_gives_the_one_transaction_listing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = workflow.Workflow("paged").step("s", topic="t")
    other = workflow.Workflow("other").step("s", topic="t")
    ids = []
    for i in range(7):
        ids.append(workflow.start_run(db, flow if i % 2 else other, i, queue_id="q"))
        time.sleep(0.002)
    workflow.cancel_run(db, ids[2])
    whole = db.transact(lambda tr: workflow.list_runs(tr))
    monkeypatch.setattr("workflow.views.RUN_PAGE", 2)
    assert workflow.list_runs(db) == whole
    assert [run.run_id for run in whole] == ids[::-1]
    assert [run.run_id for run in workflow.list_runs(db, limit=3)] == ids[:3:-1]
    assert [run.run_id for run in workflow.list_runs(db, workflow="paged")] == ids[5::-2]
    cancelled = workflow.list_runs(db, status="cancelled")
    assert [run.run_id for run in cancelled] == [ids[2]]


def test_a_read_served_from_a_snapshot_prefetch_still_conflicts(exact_db: Database) -> None:
    key, other = b"prefetch-k", b"prefetch-o"
    _put(exact_db, key, b"1")
    tr = exact_db.create_transaction()
    assert tr.get_many([key], snapshot=True) == [b"1"]
    assert tr.get(key) == b"1"  # serializable: a read conflict on key
    _put(exact_db, key, b"2")
    tr.set(other, b"x")
    with pytest.raises(StorageError) as raised:
        tr.commit()
    assert raised.value.code == 1020

    alone = exact_db.create_transaction()
    assert alone.get_many([key], snapshot=True) == [b"2"]
    _put(exact_db, key, b"3")
    alone.set(other, b"y")
    alone.commit()  # a snapshot read alone adds no conflict
