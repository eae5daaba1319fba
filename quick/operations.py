"""Operator actions on queues: requeue and purge dead letters, cancel jobs, forget
finished jobs. Each one writes; the reads behind them are in :mod:`quick.inspection`.
"""

from __future__ import annotations

from typing import Any

from keyspace.codec import unpack_value
from keyspace.errors import QuickError
from keyspace.layout import DEAD_LETTERS, FINISHED, JOB_DIRECTORY, RESULTS, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries, transactional
from quick import counters
from quick.corruption import CorruptRecord
from quick.enqueueing import directory_entry, prepare, store_new
from quick.errors import InvalidArgument, JobNotFound, JobRunning
from quick.inspection import decode_dead_letter, scan_dead
from quick.jobs import Job, JobState, now_ms
from quick.records import finish_job

__all__ = [
    "FINISHED_RETENTION_MS",
    "PURGE_BATCH",
    "cancel",
    "purge_all_dead",
    "purge_dead",
    "purge_finished",
    "requeue_all_dead",
    "requeue_dead",
]

#: How long finished jobs' tombstones stay in the directory (for idempotent retries and lookups).
FINISHED_RETENTION_MS = 24 * 3600 * 1000

#: Most dead letters one purge transaction deletes (keeps it well inside 5 s and 10 MB).
PURGE_BATCH = 1000


@transactional
def requeue_dead(tr: Transaction, queue_id: str, job_id: str) -> str:
    """Put a dead letter back on its queue as a fresh job (attempts reset); return its id.

    Raises:
        JobNotFound: no such dead letter, or it is corrupt and cannot be replayed.
    """
    key = DEAD_LETTERS.pack((queue_id, job_id))
    value = tr.get(key)
    if value is None:
        entry = directory_entry(tr, job_id)
        if entry is not None and entry["q"] == queue_id and "s" not in entry:
            return job_id  # an earlier try of this call requeued it
        raise JobNotFound(job_id)
    dead = decode_dead_letter(queue_id, job_id, value)
    if dead.job is None:
        raise JobNotFound(job_id)
    job = dead.job
    keys = queue_keys(queue_id)
    if job.unique_key is not None:
        holder = tr.get(keys.unique(job.unique_key))
        if holder is not None:
            raise InvalidArgument(
                "unique_key",
                f"{job.unique_key!r} is held by pending job {holder.decode()}; "
                "requeue this one after it finishes",
            )
    tr.clear(key)
    counters.bump(tr, keys, JobState.DEAD, -1)
    tr.clear(JOB_DIRECTORY.pack((job_id,)))
    prepared = prepare(
        queue_id,
        job.topic,
        job.payload,
        priority=job.priority,
        max_attempts=job.max_attempts,
        job_id=job_id,
        unique_key=job.unique_key,
        extension=job.extension,
    )
    return store_new(tr, prepared)


def purge_dead(
    db_or_tr: Database | Transaction, queue_id: str | None = None, job_id: str | None = None
) -> int:
    """Delete dead letters (one, one queue's, or all, up to :data:`PURGE_BATCH` at a time);
    return how many. :func:`purge_all_dead` repeats it until none is left.

    Retry semantics: a retry after ``commit_unknown_result`` that finds nothing left
    reports what its earlier try deleted.
    """
    return _purge_dead(db_or_tr, queue_id, job_id, Tries())


def purge_all_dead(db: Database, queue_id: str | None = None, *, cap: int | None = None) -> int:
    """Delete every dead letter (of one queue, or all), a bounded transaction per
    :data:`PURGE_BATCH`; return how many. Letters that die meanwhile may be deleted too.
    ``cap`` stops it once that many are deleted (at a batch's end)."""
    total = 0
    while cap is None or total < cap:
        purged = purge_dead(db, queue_id)
        total += purged
        if purged < PURGE_BATCH:
            break
    return total


def requeue_all_dead(
    db: Database, queue_id: str, *, cap: int | None = None, batch: int = 200
) -> tuple[int, int]:
    """Requeue every dead letter of ``queue_id``, one transaction each (as
    :func:`requeue_dead`), reading ``batch`` at a time; stop after ``cap`` of them.

    Returns:
        (requeued, failed): a dead letter fails when it is corrupt or its unique key
        is held by a pending job; it stays a dead letter.
    """
    done, failed, after = 0, 0, None
    while cap is None or done + failed < cap:
        letters = scan_dead(db, queue_id, after=after, limit=batch)
        for item in letters:
            if isinstance(item, CorruptRecord):
                after = DEAD_LETTERS.unpack(item.key)[1]
                failed += 1
                continue
            after = item.job_id
            try:
                requeue_dead(db, queue_id, item.job_id)
                done += 1
            except QuickError:
                failed += 1
        if len(letters) < batch or after is None:
            break
    return done, failed


@transactional
def _purge_dead(tr: Transaction, queue_id: str | None, job_id: str | None, earlier: Tries) -> int:
    if job_id is not None:
        if queue_id is None:
            raise JobNotFound(job_id)
        prefix: tuple[Any, ...] = (queue_id, job_id)
        rows = [(DEAD_LETTERS.pack(prefix), tr.get(DEAD_LETTERS.pack(prefix)))]
        rows = [(k, v) for k, v in rows if v is not None]
    else:
        bounds = DEAD_LETTERS.range((queue_id,) if queue_id is not None else ())
        rows = list(tr.get_range(*bounds, limit=PURGE_BATCH))
    for key, _ in rows:
        queue, ident = DEAD_LETTERS.unpack(key)
        tr.clear(key)
        tr.clear(JOB_DIRECTORY.pack((ident,)))
        counters.bump(tr, queue_keys(queue), JobState.DEAD, -1)
    if not rows:
        return earlier.found
    earlier.found = len(rows)
    return len(rows)


@transactional
def _cancel(tr: Transaction, job_id: str, now: int) -> bool:
    entry = directory_entry(tr, job_id)
    if entry is None:
        return False
    if "s" in entry:
        return bool(entry["s"] == JobState.CANCELLED.value)
    keys = queue_keys(entry["q"])
    data = tr.get(keys.job(job_id))
    if data is None:
        return False
    job = Job.from_value(entry["q"], job_id, data)
    if job.state is JobState.LEASED and job.vis_ms > now:
        raise JobRunning(job_id)
    finish_job(tr, keys, job, JobState.CANCELLED, now)
    return True


def cancel(db_or_tr: Database | Transaction, job_id: str) -> bool:
    """Remove a job that is not running; True if it is (now) cancelled, False if it is
    unknown or finished otherwise.

    Raises:
        JobRunning: the job holds a live lease.
    """
    return _cancel(db_or_tr, job_id, now_ms())


@transactional
def _purge_finished(tr: Transaction, before: int, limit: int) -> int:
    end = FINISHED.pack((before,))
    rows = tr.get_range(FINISHED.range()[0], end, limit=limit)
    directories = [JOB_DIRECTORY.pack((FINISHED.unpack(key)[1],)) for key, _ in rows]
    entries = tr.get_many(directories)  # one round trip for the page
    for (key, _), directory, entry in zip(rows, directories, entries, strict=True):
        tr.clear(key)
        if entry is not None and "s" in unpack_value(entry):
            tr.clear(directory)
            tr.clear(RESULTS.pack(FINISHED.unpack(key)[1:]))  # the result goes with it
    return len(rows)


def purge_finished(
    db: Database, *, older_than_ms: int = FINISHED_RETENTION_MS, limit: int = 1000
) -> int:
    """Forget finished jobs' tombstones, and their results, older than ``older_than_ms``;
    return how many."""
    return _purge_finished(db, now_ms() - older_than_ms, limit)
