"""Moving a queue's dead letters and cron schedules between stores (``quick migrate``).

Neither runs on its own, so neither needs staging: each is copied to the destination,
then deleted from the source only if it is still as it was copied (steps 4 and 6 of
:mod:`quick.migration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import CRON, CRON_DUE, DEAD_LETTERS, JOB_DIRECTORY, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries, transactional
from quick import counters
from quick.cron import decode_schedule
from quick.jobs import JobState
from quick.migration_report import BATCH_BYTES, PAGE, PassTally, Refusal
from quick.records import tombstone

__all__ = ["move_dead_letters", "move_schedules", "schedules"]


def move_dead_letters(
    source: Database, dest: Database, queue: str, batch_size: int, tally: PassTally
) -> None:
    begin, end = DEAD_LETTERS.range((queue,))
    while True:
        rows = source.transact(_read_dead, begin, end, batch_size)
        if not rows:
            return
        tally.dead_letters += dest.transact(_put_dead, queue, rows, Tries())
        source.transact(_delete_dead, queue, rows)
        begin = rows[-1][0] + b"\x00"


def _read_dead(tr: Transaction, begin: bytes, end: bytes, limit: int) -> list[tuple[bytes, bytes]]:
    rows, size = [], 0
    for key, value in tr.snapshot.get_range(begin, end, limit=limit):
        rows.append((key, value))
        size += len(value)
        if size >= BATCH_BYTES:
            break
    return rows


def _dead_time(value: bytes) -> int:
    try:
        record = unpack_value(value)
    except CorruptValue:
        return 0
    at = record.get("at") if isinstance(record, dict) else None
    return at if isinstance(at, int) else 0


@transactional
def _put_dead(
    tr: Transaction, queue: str, rows: Sequence[tuple[bytes, bytes]], earlier: Tries
) -> int:
    """Copy dead letters the destination lacks, with their directory entries; how many
    (a retry that finds all copied reports what its earlier try wrote)."""
    existing = tr.get_many([key for key, _ in rows])
    written = 0
    for (key, value), there in zip(rows, existing, strict=True):
        if there is not None:
            continue
        job_id = str(DEAD_LETTERS.unpack(key)[1])
        tr.set(key, value)
        tr.set(JOB_DIRECTORY.pack((job_id,)), tombstone(queue, "dead", _dead_time(value), None))
        written += 1
    if written:
        counters.bump(tr, queue_keys(queue), JobState.DEAD, written)
    elif earlier.found:
        return earlier.found
    earlier.found = written
    return written


@transactional
def _delete_dead(tr: Transaction, queue: str, rows: Sequence[tuple[bytes, bytes]]) -> None:
    """Delete from the source each dead letter still as it was copied."""
    current = tr.get_many([key for key, _ in rows])
    deleted = 0
    for (key, value), now_there in zip(rows, current, strict=True):
        if now_there != value:
            continue
        tr.clear(key)
        tr.clear(JOB_DIRECTORY.pack((str(DEAD_LETTERS.unpack(key)[1]),)))
        deleted += 1
    if deleted:
        counters.bump(tr, queue_keys(queue), JobState.DEAD, -deleted)


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


def move_schedules(source: Database, dest: Database, queue: str, tally: PassTally) -> None:
    for value, item in schedules(source, queue):
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
