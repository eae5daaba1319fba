"""quick.migrate against stores with FoundationDB's round trips simulated
(``?latency=``): every transaction of a pass over 500 queues stays well inside the
5 seconds a cluster allows, measured at the storage seam."""

from __future__ import annotations

from pathlib import Path

import pytest

import quick
from tests.integration.seams import SeamDatabase

#: FoundationDB refuses a transaction older than this (transaction_too_old, 1007).
FDB_LIFETIME = 5.0


@pytest.mark.slow
def test_migrate_over_500_queues_keeps_every_transaction_short(tmp_path: Path) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    dest_url = f"sqlite:///{tmp_path / 'dest.db'}"
    queues = [f"tenant-{n:03d}" for n in range(500)]
    with quick.open(source_url) as db:
        specs = [{"queue_id": queue, "topic": "record", "payload": None} for queue in queues]
        # One queue whose jobs all hold unique keys: a batch checks 200 of them at once.
        specs += [
            {"queue_id": queues[0], "topic": "record", "unique_key": f"u{n}"} for n in range(400)
        ]
        ids = set(quick.enqueue_many(db, specs))
        (claim,) = quick.claim(db, queues[1], "op", limit=1)
        quick.complete(db, claim)  # a finished id, whose tombstone moves
    with (
        quick.open(f"{source_url}?latency=read:10") as slow_source,
        quick.open(f"{dest_url}?latency=read:10") as slow_dest,
    ):
        source, source_lives = SeamDatabase.timed(slow_source)
        dest, dest_lives = SeamDatabase.timed(slow_dest)
        report = quick.migrate(source, dest)  # type: ignore[arg-type]
    longest = max(source_lives + dest_lives)
    assert longest < FDB_LIFETIME, f"a transaction lived {longest:.2f} s"
    assert report.finished, report
    assert report.jobs == len(ids) - 1
    assert report.tombstones == 1
    with quick.open(dest_url) as db:
        moved = {job.id for queue in queues for job in quick.list_jobs(db, queue, limit=1000)}
    assert moved == ids - {claim.job_id}
