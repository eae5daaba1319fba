"""Moving a queue's dead letters between stores: stage, delete, install (``quick migrate``).

The same three steps as jobs (:mod:`quick.migration_jobs`), for the same reason: a dead
letter can change on the source while it is copied (``dlq requeue`` makes it a job
again, ``dlq purge`` deletes it), so a copy written straight to the destination could
outlive it there, a second copy of a job that runs again on the source. So each batch
is staged on the destination under ``("migd", queue, job_id)``, where nothing lists it;
deleted from the source only where it is still as read, leaving a ``moved`` tombstone
in the directory; and only then installed. A kill between two steps leaves staged
letters that :func:`recover_dead` installs (the source holds their tombstone) or drops.
"""

from __future__ import annotations

from collections.abc import Sequence

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import DEAD_LETTERS, FINISHED, JOB_DIRECTORY, MIGRATING_DEAD, queue_keys
from keyspace.protocol import Transaction
from keyspace.retry import transactional
from quick import counters
from quick.jobs import JobState
from quick.migration_jobs import Fate, is_known, staged_fate, sweep_staged
from quick.migration_lease import Fenced
from quick.migration_report import BATCH_BYTES, PassTally
from quick.records import tombstone

__all__ = ["move_dead_letters", "recover_dead"]

#: A dead letter as read from the source: its job id and stored value.
_Letter = tuple[str, bytes]


def move_dead_letters(
    source: Fenced, dest: Fenced, queue: str, now: int, batch_size: int, tally: PassTally
) -> None:
    """Move ``queue``'s dead letters, a batch at a time."""
    begin: bytes | None
    begin, end = DEAD_LETTERS.range((queue,))
    while begin is not None:
        batch, begin = source.db.transact(_read_dead, queue, begin, end, batch_size)
        if not batch:
            continue
        staged, known = dest.transact(_stage_dead, queue, batch)
        taken = [letter for letter in batch if letter[0] in staged or letter[0] in known]
        deleted = source.transact(_delete_dead, queue, taken, now)
        installed = [job_id for job_id in staged if job_id in deleted]
        dropped = [job_id for job_id in staged if job_id not in deleted]
        dest.transact(_install_dead, queue, installed, dropped, now)
        tally.dead_letters += len(installed)
        tally.duplicates += sum(1 for job_id in known if job_id in deleted)


def _read_dead(
    tr: Transaction, queue: str, begin: bytes, end: bytes, limit: int
) -> tuple[list[_Letter], bytes | None]:
    """The next dead letters from ``begin``, and where the next batch starts (None at
    the end). Snapshot reads: the delete re-reads."""
    rows = tr.snapshot.get_range(begin, end, limit=limit)
    batch: list[_Letter] = []
    size = 0
    after = None if len(rows) < limit else rows[-1][0] + b"\x00"
    for key, value in rows:
        try:
            job_id = DEAD_LETTERS.unpack(key)[1]
        except (ValueError, IndexError):
            continue  # not a dead letter's key: check --deep names it
        batch.append((str(job_id), value))
        size += len(value)
        if size >= BATCH_BYTES:
            after = key + b"\x00"
            break
    return batch, after


@transactional
def _stage_dead(tr: Transaction, queue: str, batch: Sequence[_Letter]) -> tuple[set[str], set[str]]:
    """Stage ``batch`` on the destination: (staged ids, ids it already knows)."""
    entries = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for job_id, _ in batch])
    staged: set[str] = set()
    known: set[str] = set()
    for (job_id, value), entry in zip(batch, entries, strict=True):
        if is_known(entry):
            known.add(job_id)
            continue
        tr.set(MIGRATING_DEAD.pack((queue, job_id)), value)
        staged.add(job_id)
    return staged, known


@transactional
def _delete_dead(tr: Transaction, queue: str, batch: Sequence[_Letter], now: int) -> set[str]:
    """Delete from the source each dead letter still as read, leaving a ``moved``
    tombstone; their ids.

    Retry semantics: a letter gone with a ``moved`` tombstone was deleted by an earlier
    try whose commit result was unknown, and counts as deleted.
    """
    ids = [job_id for job_id, _ in batch]
    current = tr.get_many([DEAD_LETTERS.pack((queue, job_id)) for job_id in ids])
    gone = [job_id for job_id, value in zip(ids, current, strict=True) if value is None]
    deleted = _dead_moved_away(tr, queue, gone) if gone else set()
    removed = 0
    for (job_id, value), now_there in zip(batch, current, strict=True):
        if now_there != value:
            continue
        tr.clear(DEAD_LETTERS.pack((queue, job_id)))
        tr.set(JOB_DIRECTORY.pack((job_id,)), tombstone(queue, JobState.MOVED.value, now, None))
        tr.set(FINISHED.pack((now, job_id)), b"")
        deleted.add(job_id)
        removed += 1
    if removed:
        counters.bump(tr, queue_keys(queue), JobState.DEAD, -removed)
    return deleted


@transactional
def _install_dead(
    tr: Transaction, queue: str, job_ids: Sequence[str], dropped: Sequence[str], now: int
) -> int:
    """Turn staged dead letters into dead letters of ``queue`` and drop the staged
    ``dropped``; how many were installed."""
    for job_id in dropped:
        tr.clear(MIGRATING_DEAD.pack((queue, job_id)))
    staged = tr.get_many([MIGRATING_DEAD.pack((queue, job_id)) for job_id in job_ids])
    entries = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for job_id in job_ids])
    installed = 0
    for job_id, value, entry in zip(job_ids, staged, entries, strict=True):
        if value is None:
            continue
        tr.clear(MIGRATING_DEAD.pack((queue, job_id)))
        if is_known(entry):
            continue
        tr.set(DEAD_LETTERS.pack((queue, job_id)), value)
        died = _dead_time(value, now)
        tr.set(JOB_DIRECTORY.pack((job_id,)), tombstone(queue, JobState.DEAD.value, died, None))
        installed += 1
    if installed:
        counters.bump(tr, queue_keys(queue), JobState.DEAD, installed)
    return installed


def _dead_time(value: bytes, default: int) -> int:
    """When the letter died, from its record (``default`` for a bare or corrupt one)."""
    try:
        record = unpack_value(value)
    except CorruptValue:
        return default
    at = record.get("at") if isinstance(record, dict) else None
    return at if isinstance(at, int) else default


def recover_dead(source: Fenced, dest: Fenced, queue: str, now: int, tally: PassTally) -> None:
    """Install or drop the dead letters a killed pass from this source left staged on the
    destination (what another source's pass staged is left for its rerun)."""

    def settle(installed: list[str], dropped: list[str]) -> None:
        tally.dead_letters += dest.transact(_install_dead, queue, installed, dropped, now)

    sweep_staged(source, dest, MIGRATING_DEAD, queue, _dead_fates, settle)


@transactional
def _dead_fates(tr: Transaction, queue: str, job_ids: Sequence[str]) -> list[Fate]:
    letters = tr.get_many([DEAD_LETTERS.pack((queue, job_id)) for job_id in job_ids], snapshot=True)
    entries = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for job_id in job_ids], snapshot=True)
    return [staged_fate(letter, entry) for letter, entry in zip(letters, entries, strict=True)]


@transactional
def _dead_moved_away(tr: Transaction, queue: str, job_ids: Sequence[str]) -> set[str]:
    """The ids among ``job_ids`` whose dead letter the source deleted with a ``moved``
    tombstone."""
    fates = _dead_fates(tr, queue, job_ids)
    return {job_id for job_id, fate in zip(job_ids, fates, strict=True) if fate is Fate.INSTALL}
