"""Moving the cron schedules that target a queue between stores (``quick migrate``).

A schedule does not run on its own (it enqueues jobs, which the moved marker refuses
on the source), so it needs no staging: each is copied to the destination, then
deleted from the source only if it still does what was copied (step 4 of
:mod:`quick.migration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keyspace.codec import CorruptValue, pack_value
from keyspace.layout import CRON, CRON_DUE
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries, transactional
from quick.cron import decode_schedule
from quick.migration_lease import Fenced
from quick.migration_report import PAGE, PassTally, Refusal

__all__ = ["move_schedules", "schedules"]


def schedules(db: Database, queue: str | None) -> list[tuple[bytes, Any]]:
    """``(stored value, Schedule)`` of every decodable schedule (targeting ``queue``)."""
    out = []
    begin: bytes | None
    begin, end = CRON.range()
    while begin is not None:
        rows, begin = db.transact(_schedule_page, begin, end)
        for key, value in rows:
            try:
                item = decode_schedule(CRON.unpack(key)[0], value)
            except (CorruptValue, ValueError, TypeError):
                continue
            if queue is None or item.queue_id == queue:
                out.append((value, item))
    return out


def _schedule_page(
    tr: Transaction, begin: bytes, end: bytes
) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    rows = tr.snapshot.get_range(begin, end, limit=PAGE)
    return rows, rows[-1][0] + b"\x00" if len(rows) == PAGE else None


def _target(value: bytes | None, name: str) -> tuple[Any, ...] | None:
    """What a schedule does, without when it next fires (None for no record)."""
    if value is None:
        return None
    try:
        item = decode_schedule(name, value)
    except (CorruptValue, ValueError, TypeError):
        return ("corrupt",)
    return item.cron, item.tz, item.queue_id, item.topic, pack_value(item.payload)


def move_schedules(
    source: Fenced, dest: Fenced, queue: str, found: Sequence[tuple[bytes, Any]], tally: PassTally
) -> None:
    """Move the schedules of ``found`` (as :func:`schedules` listed them) that target
    ``queue``."""
    for value, item in found:
        if item.queue_id != queue:
            continue
        if not dest.transact(_put_schedule, item.name, value, item.next_ms):
            reason = f"cron schedule {item.name!r}: the destination has another schedule so named"
            tally.refused.append(Refusal(queue, reason))
            continue
        if source.transact(_delete_schedule, item.name, value, Tries()):
            tally.cron_schedules += 1


@transactional
def _put_schedule(tr: Transaction, name: str, value: bytes, next_ms: int) -> bool:
    """Copy a schedule unless the destination has one of that name doing something else."""
    key = CRON.pack((name,))
    there = tr.get(key)
    if there is not None:
        return _target(there, name) == _target(value, name)
    tr.set(key, value)
    tr.set(CRON_DUE.pack((next_ms, name)), b"")
    return True


@transactional
def _delete_schedule(tr: Transaction, name: str, value: bytes, earlier: Tries) -> bool:
    """Delete the source's schedule if it still does what was copied (its next run may
    have advanced: on a moved queue the source skips ticks)."""
    key = CRON.pack((name,))
    current = tr.get(key)
    if current is None or _target(current, name) != _target(value, name):
        return current is None and bool(earlier.found)
    earlier.found = 1
    tr.clear(key)
    tr.clear(CRON_DUE.pack((decode_schedule(name, current).next_ms, name)))
    return True
