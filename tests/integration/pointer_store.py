"""The pointer index and queues read directly from the store (through :mod:`keyspace.layout`,
not through the pointer module), and the pointer invariant of :mod:`quick.pointers`:

* a pointer record and its index entry mirror each other: a queue has a record iff it has
  an index entry, never more than one entry, and the entry's ``vis_ms`` is the record's;
* every queue holding a job (ready or scheduled index non-empty) has a pointer, and it is
  not later than the queue's earliest job visibility by more than
  :data:`quick.pointers.REWRITE_THRESHOLD_MS`.

That tolerance is the protocol's own (a producer moves the pointer earlier only when it is
later than the new job by more than the threshold), so "ready jobs => pointer <= now" holds
up to it: a job delayed 100 ms on an empty queue puts the pointer at now + 100, and a ready
job enqueued next rightly leaves it there.

Shared by the pointer race tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyspace.codec import unpack_value
from keyspace.layout import POINTER_INDEX, POINTERS, QueueKeys
from keyspace.protocol import Database, Transaction
from quick import pointers

T0 = 1_800_000_000_000
LEASE_MS = 10_000
THRESHOLD = pointers.REWRITE_THRESHOLD_MS
NOT_COMMITTED = 1020


# -- reading the store directly ----------------------------------------------------------


@dataclass(frozen=True)
class QueueView:
    """One queue as stored: its pointer record, index entries and job visibilities."""

    record_vis: int | None
    index_vis: list[int]
    ready_vis: list[int]
    scheduled_vis: list[int]


def read_queues(db: Database, queues: list[str]) -> dict[str, QueueView]:
    tr = db.create_transaction()
    try:
        entries: dict[str, list[int]] = {}
        for key, _ in tr.snapshot.get_range(*POINTER_INDEX.range()):
            vis, queue = POINTER_INDEX.unpack(key)
            entries.setdefault(queue, []).append(vis)
        out = {}
        for queue in queues:
            keys = QueueKeys(queue)
            raw = tr.snapshot.get(POINTERS.pack((queue,)))
            out[queue] = QueueView(
                record_vis=None if raw is None else unpack_value(raw)["v"],
                index_vis=entries.get(queue, []),
                ready_vis=[
                    keys.unpack_ready(k)[1] for k, _ in tr.snapshot.get_range(*keys.ready_range())
                ],
                scheduled_vis=[
                    keys.unpack_scheduled(k)[0]
                    for k, _ in tr.snapshot.get_range(*keys.scheduled_range())
                ],
            )
        return out
    finally:
        tr.cancel()


def check_pointer_invariant(db: Database, queues: list[str], now: int, where: str) -> None:
    doubled = db.transact(lambda tr: _queues_with_several_index_entries(tr))
    assert not doubled, f"{where}: queues with more than one pointer-index entry: {doubled}"
    for queue, view in read_queues(db, queues).items():
        context = f"{where}: queue {queue!r} {view}"
        assert len(view.index_vis) <= 1, f"more than one pointer-index entry; {context}"
        if view.record_vis is None:
            assert view.index_vis == [], f"index entry without a pointer record; {context}"
        else:
            assert view.index_vis == [view.record_vis], (
                f"pointer record and index entry disagree; {context}"
            )
        if not (view.ready_vis or view.scheduled_vis):
            continue
        assert view.record_vis is not None, f"a queue holding jobs has no pointer; {context}"
        earliest = min(view.ready_vis + view.scheduled_vis)
        assert view.record_vis <= earliest + THRESHOLD, f"pointer later than its jobs; {context}"
        if view.ready_vis:
            assert view.record_vis <= now + THRESHOLD, f"ready jobs, pointer not due; {context}"


def _queues_with_several_index_entries(tr: Transaction) -> list[str]:
    seen: dict[str, int] = {}
    for key, _ in tr.snapshot.get_range(*POINTER_INDEX.range()):
        _, queue = POINTER_INDEX.unpack(key)
        seen[queue] = seen.get(queue, 0) + 1
    return sorted(queue for queue, count in seen.items() if count > 1)
