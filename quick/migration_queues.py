"""Which queues a migration pass takes: every queue of the source, or the named ones
checked to exist, less those with a workflow run in flight (``quick migrate``).

Every read here is paged by key, one range read (and at most one batched point read)
per transaction, so no transaction nears FoundationDB's 5 seconds however many queues
the store holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import (
    DEAD_LETTERS,
    MIGRATING,
    MIGRATING_DEAD,
    MOVED,
    POINTERS,
    QUEUES,
    WF_BY_STATUS,
    WF_RUNS,
)
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from keyspace.subspace import Subspace
from quick.migration_records import schedules
from quick.migration_report import PAGE

__all__ = ["DISTINCT_PAGE", "run_reason", "runs_in_flight", "source_queues", "unknown_queues"]

#: Keys per range read when listing the distinct queues of a subspace. The rows carry
#: their values (job records up to 95 KB), so fewer than :data:`PAGE`; a queue with more
#: keys than this is skipped past in one step.
DISTINCT_PAGE = 100


def source_queues(source: Database, dest: Database) -> list[str]:
    """Every queue with anything on the source (jobs, counters, dead letters, cron
    targets), and every queue a killed pass left staged on the destination."""
    found = _distinct(source, QUEUES) + _distinct(source, DEAD_LETTERS)
    found += [item.queue_id for _, item in schedules(source, None)]
    found += _distinct(dest, MIGRATING) + _distinct(dest, MIGRATING_DEAD)
    return list(dict.fromkeys(found))


def unknown_queues(source: Database, dest: Database, names: Sequence[str]) -> list[str]:
    """The ``names`` that are no queue of the source: nothing stored under them (jobs,
    counters, dead letters, pointer, moved marker), no cron schedule targeting them, and
    nothing a killed pass left staged for them on the destination."""
    targets = {item.queue_id for _, item in schedules(source, None)}
    unknown = []
    for queue in names:
        if queue in targets:
            continue
        if source.transact(_has_queue, queue) or dest.transact(_has_staged, queue):
            continue
        unknown.append(queue)
    return unknown


@transactional
def _has_queue(tr: Transaction, queue: str) -> bool:
    view = tr.snapshot
    found = tr.get_many([MOVED.pack((queue,)), POINTERS.pack((queue,))], snapshot=True)
    return (
        any(value is not None for value in found)
        or bool(view.get_range(*QUEUES.range((queue,)), limit=1))
        or bool(view.get_range(*DEAD_LETTERS.range((queue,)), limit=1))
    )


@transactional
def _has_staged(tr: Transaction, queue: str) -> bool:
    view = tr.snapshot
    return bool(view.get_range(*MIGRATING.range((queue,)), limit=1)) or bool(
        view.get_range(*MIGRATING_DEAD.range((queue,)), limit=1)
    )


def _distinct(db: Database, space: Subspace) -> list[str]:
    """The distinct first elements of the keys under ``space`` that are text."""
    out: list[str] = []
    begin: bytes | None
    begin, end = space.range()
    while begin is not None:
        names, begin = db.transact(_distinct_page, space, begin, end)
        out += names
    return list(dict.fromkeys(out))


def _distinct_page(
    tr: Transaction, space: Subspace, begin: bytes, end: bytes
) -> tuple[list[str], bytes | None]:
    """The names in one page of keys, and where the next page starts: past every key of
    the page's last name, so a queue of a million jobs costs one page, not thousands."""
    rows = tr.snapshot.get_range(begin, end, limit=DISTINCT_PAGE)
    names: list[str] = []
    first: Any = None
    for key, _ in rows:
        try:
            first = space.unpack(key)[0]
        except (ValueError, IndexError):
            first = None
            continue
        if isinstance(first, str):
            names.append(first)
    if len(rows) < DISTINCT_PAGE:
        return names, None
    if first is None:
        return names, rows[-1][0] + b"\x00"
    return names, space.range((first,))[1]


def run_reason(run_id: str) -> str:
    """Why a queue with workflow run ``run_id`` in flight is refused."""
    return (
        f"workflow run {run_id} on this queue is in flight; workflow runs do not move "
        "(wait for it to finish, or cancel it)"
    )


def runs_in_flight(db: Database, queues: set[str]) -> dict[str, str]:
    """``{queue: run id}`` for a running or paused workflow run on each of ``queues``."""
    found: dict[str, str] = {}
    if not queues:
        return found
    for status in ("running", "paused"):
        begin, end = WF_BY_STATUS.range((status,))
        while begin is not None:
            page, begin = db.transact(_runs_page, begin, end)
            for run_id, queue in page:
                if queue in queues:
                    found.setdefault(queue, run_id)
    return found


def _runs_page(tr: Transaction, begin: bytes, end: bytes) -> tuple[list[tuple[str, Any]], Any]:
    rows = tr.snapshot.get_range(begin, end, limit=PAGE)
    run_ids = [WF_BY_STATUS.unpack(key)[2] for key, _ in rows]
    records = tr.get_many([WF_RUNS.pack((run_id,)) for run_id in run_ids], snapshot=True)
    page = []
    for run_id, data in zip(run_ids, records, strict=True):
        try:
            record = unpack_value(data) if data is not None else None
        except CorruptValue:
            continue
        if isinstance(record, dict):
            page.append((run_id, record.get("q")))
    more = rows[-1][0] + b"\x00" if len(rows) == PAGE else None
    return page, more
