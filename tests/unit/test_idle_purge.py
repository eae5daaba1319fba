"""The purge chore on a store with nothing to purge commits no write.

Every worker purges every second; on the sqlite engine a commit that writes appends to
the write-ahead log, which wakes every watch of every worker sharing the store, so an
idle purge that wrote made idle workers' CPU grow with the square of their number.
"""

from __future__ import annotations

import quick
from keyspace.layout import FINISHED_PER_MINUTE
from keyspace.protocol import Database
from quick import operations, throughput
from quick.jobs import now_ms


def _purge_committed_version(db: Database, now: int) -> int:
    tr = db.create_transaction()
    operations._purge_finished(tr, now, 1000, now - throughput.KEEP_MS)
    tr.commit()
    return tr.get_committed_version()


def test_purge_finished_with_nothing_to_purge_writes_nothing(exact_db: Database) -> None:
    quick.enqueue(exact_db, "q", "t", {})  # a store in use, with no tombstone or old count
    assert _purge_committed_version(exact_db, now_ms()) == -1


def test_purge_counts_still_clears_old_minutes(exact_db: Database) -> None:
    now = now_ms()
    old = FINISHED_PER_MINUTE.pack((now - throughput.KEEP_MS - 2 * throughput.MINUTE_MS,))
    recent = FINISHED_PER_MINUTE.pack((now - now % throughput.MINUTE_MS,))
    exact_db.transact(lambda tr: [tr.set(k, (1).to_bytes(8, "little")) for k in (old, recent)])
    assert _purge_committed_version(exact_db, now) > 0
    left = exact_db.transact(lambda tr: [tr.get(k) for k in (old, recent)])
    assert left == [None, (1).to_bytes(8, "little")]
