"""Looking at and steering queues: job state, counts, dead letters, cancel, purge.

Counts come from the per-queue atomic counters (no scans); they count jobs by the
index they sit in, so a scheduled job whose time has come still counts as
``scheduled`` (and an expired lease as ``leased``) until a claim promotes it.

The ``scan_*`` readers never raise on a stored record that does not decode: they
return a :class:`CorruptRecord` naming its key in its place, so a listing (the
dashboard's, say) can show the rest. The ``list_*`` readers keep their contracts
on top of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import (
    DEAD_LETTERS,
    FINISHED,
    JOB_DIRECTORY,
    POINTERS,
    describe,
    queue_keys,
)
from keyspace.protocol import Database, Transaction
from keyspace.retry import EarlierTries, transactional
from quick import counters
from quick.enqueueing import directory_entry, prepare, store_new
from quick.errors import InvalidArgument, JobNotFound, JobRunning
from quick.jobs import Job, JobState, now_ms
from quick.leases import _finish

__all__ = [
    "CorruptRecord",
    "DeadLetter",
    "scan_jobs",
    "scan_dead",
    "get_dead",
    "oldest_ready_ms",
    "count_finished",
    "get_job",
    "job_state",
    "queue_counts",
    "list_queues",
    "list_jobs",
    "list_dead",
    "requeue_dead",
    "purge_dead",
    "cancel",
    "purge_finished",
    "FINISHED_RETENTION_MS",
]

#: How long finished jobs' tombstones stay in the directory (for idempotent retries and lookups).
FINISHED_RETENTION_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A dead-lettered job: the job as it was, why it died, and when."""

    queue_id: str
    job_id: str
    error: str
    failed_ms: int
    job: Job | None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CorruptRecord:
    """A stored record that did not decode: its key and why, shown in place of the record."""

    key: bytes
    error: str

    @property
    def where(self) -> str:
        """The key in words (``job  queue='t1' job_id='...'``), for messages."""
        return describe(self.key)


#: What a stored record that does not decode raises: the codec's error, or the wrong shape.
_UNDECODABLE = (CorruptValue, KeyError, TypeError, ValueError, AttributeError)


def _lookup(tr: Transaction, job_id: str) -> tuple[str, dict[str, Any]] | None:
    entry = directory_entry(tr, job_id)
    if entry is None:
        return None
    return entry["q"], entry


@transactional
def get_job(tr: Transaction, job_id: str) -> Job | None:
    """The stored job with ``job_id`` while it is pending or running, else None."""
    found = _lookup(tr, job_id)
    if found is None:
        return None
    data = tr.get(queue_keys(found[0]).job(job_id))
    return None if data is None else Job.from_value(found[0], job_id, data)


@transactional
def _job_state(tr: Transaction, job_id: str, now: int) -> JobState | None:
    found = _lookup(tr, job_id)
    if found is None:
        return None
    queue, entry = found
    if "s" in entry:
        return JobState(entry["s"])
    data = tr.get(queue_keys(queue).job(job_id))
    if data is None:
        return None
    return Job.from_value(queue, job_id, data).visible_state(now)


def job_state(db_or_tr: Database | Transaction, job_id: str) -> JobState | None:
    """``scheduled``, ``ready``, ``leased``, ``dead``, or the outcome of a finished job
    (``completed``, ``discarded``, ``cancelled``, kept for a day); None if unknown."""
    return _job_state(db_or_tr, job_id, now_ms())


@transactional
def queue_counts(tr: Transaction, queue_id: str) -> dict[str, int]:
    """``{state: count}`` for one queue, from its atomic counters."""
    return counters.read_counts(tr.snapshot, queue_id)


@transactional
def scan_jobs(tr: Transaction, queue_id: str, *, limit: int = 100) -> list[Job | CorruptRecord]:
    """Jobs waiting or running in one queue, in claim order: ready ones best first, then
    scheduled and leased ones by the time they become visible; undecodable ones as
    :class:`CorruptRecord`."""
    keys = queue_keys(queue_id)
    ids = [
        keys.unpack_ready(k)[2] for k, _ in tr.snapshot.get_range(*keys.ready_range(), limit=limit)
    ]
    if len(ids) < limit:
        rows = tr.snapshot.get_range(*keys.scheduled_range(), limit=limit - len(ids))
        ids += [keys.unpack_scheduled(k)[1] for k, _ in rows]
    jobs: list[Job | CorruptRecord] = []
    for job_id in ids:
        key = keys.job(job_id)
        data = tr.snapshot.get(key)
        if data is not None:
            try:
                jobs.append(Job.from_value(queue_id, job_id, data))
            except CorruptValue as error:
                jobs.append(CorruptRecord(key=key, error=str(error)))
    return jobs


def list_jobs(db_or_tr: Database | Transaction, queue_id: str, *, limit: int = 100) -> list[Job]:
    """Jobs waiting or running in one queue: ready ones best first, then by visibility time
    (corrupt records left out)."""
    return [job for job in scan_jobs(db_or_tr, queue_id, limit=limit) if isinstance(job, Job)]


@transactional
def oldest_ready_ms(
    tr: Transaction, queue_id: str, now: int, *, priorities: int = 32
) -> int | None:
    """When the longest-waiting job visible at ``now`` became visible; None if none is.

    The ready index is ordered by priority first, so this reads the first entry of each
    priority present (a skip scan, at most ``priorities`` of them) and the first
    scheduled entry (a due scheduled job or an expired lease waits since its time).
    """
    keys = queue_keys(queue_id)
    ready = keys.space["r"]
    found: list[int] = []
    begin, end = keys.ready_range()
    for _ in range(priorities):
        rows = tr.snapshot.get_range(begin, end, limit=1)
        if not rows:
            break
        priority, vis_ms, _ = keys.unpack_ready(rows[0][0])
        found.append(vis_ms)
        begin = ready.range((priority,))[1]
    due = tr.snapshot.get_range(*keys.scheduled_range(now), limit=1)
    if due:
        found.append(keys.unpack_scheduled(due[0][0])[0])
    return min(found, default=None)


@transactional
def count_finished(tr: Transaction, since_ms: int, *, limit: int = 10_000) -> int:
    """Jobs finished (completed, discarded or cancelled) at or after ``since_ms``, counted
    from the finished-jobs index up to ``limit`` (a cap, so a busy hour stays cheap)."""
    rows = tr.snapshot.get_range(FINISHED.pack((since_ms,)), FINISHED.range()[1], limit=limit)
    return len(rows)


@transactional
def list_queues(
    tr: Transaction, *, limit: int = 1000, after: str | None = None
) -> list[dict[str, Any]]:
    """Queues that have a pointer, by name (those after ``after``), with their pointer
    time and counts."""
    begin, end = POINTERS.range()
    if after is not None:
        begin = POINTERS.pack((after,)) + b"\x00"
    out = []
    for key, value in tr.snapshot.get_range(begin, end, limit=limit):
        (queue,) = POINTERS.unpack(key)
        pointer = unpack_value(value)
        out.append(
            {
                "queue": queue,
                "next_visible_ms": pointer["v"],
                "empty_since_ms": pointer["e"],
                "counts": counters.read_counts(tr.snapshot, queue),
            }
        )
    return out


def _dead_letter(queue: str, job_id: str, value: bytes) -> DeadLetter:
    record = unpack_value(value)
    job = None
    if record.get("job") is not None:
        try:
            job = Job.from_value(queue, job_id, record["job"])
        except CorruptValue:
            job = None
    return DeadLetter(
        queue_id=queue,
        job_id=job_id,
        error=record["error"],
        failed_ms=record["at"],
        job=job,
        raw=record.get("raw"),
    )


def _dead_or_corrupt(key: bytes, value: bytes) -> DeadLetter | CorruptRecord:
    queue, job_id = DEAD_LETTERS.unpack(key)
    try:
        return _dead_letter(queue, job_id, value)
    except _UNDECODABLE as error:
        return CorruptRecord(key=key, error=f"{type(error).__name__}: {error}")


@transactional
def scan_dead(
    tr: Transaction,
    queue_id: str | None = None,
    *,
    after: str | None = None,
    limit: int = 100,
) -> list[DeadLetter | CorruptRecord]:
    """Dead letters, of one queue or all, in queue then job-id order (with ``queue_id``,
    those after job id ``after``); undecodable ones as :class:`CorruptRecord`."""
    begin, end = DEAD_LETTERS.range((queue_id,) if queue_id is not None else ())
    if queue_id is not None and after is not None:
        begin = DEAD_LETTERS.pack((queue_id, after)) + b"\x00"
    return [_dead_or_corrupt(k, v) for k, v in tr.snapshot.get_range(begin, end, limit=limit)]


def list_dead(
    db_or_tr: Database | Transaction, queue_id: str | None = None, *, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters, of one queue or all, in queue then job-id order.

    Raises:
        CorruptValue: a dead-letter record does not decode (:func:`scan_dead` shows the rest).
    """
    out = []
    for item in scan_dead(db_or_tr, queue_id, limit=limit):
        if isinstance(item, CorruptRecord):
            raise CorruptValue(f"corrupt record at {item.where}: {item.error}")
        out.append(item)
    return out


@transactional
def get_dead(tr: Transaction, queue_id: str, job_id: str) -> DeadLetter | CorruptRecord | None:
    """The dead letter of ``job_id`` in ``queue_id``, a :class:`CorruptRecord`, or None."""
    key = DEAD_LETTERS.pack((queue_id, job_id))
    value = tr.snapshot.get(key)
    return None if value is None else _dead_or_corrupt(key, value)


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
    dead = _dead_letter(queue_id, job_id, value)
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
    """Delete dead letters (one, one queue's, or all, up to 1,000 at a time); return how many.

    Retry semantics: a retry after ``commit_unknown_result`` that finds nothing left
    reports what its earlier try deleted.
    """
    return _purge_dead(db_or_tr, queue_id, job_id, EarlierTries())


@transactional
def _purge_dead(
    tr: Transaction, queue_id: str | None, job_id: str | None, earlier: EarlierTries
) -> int:
    if job_id is not None:
        if queue_id is None:
            raise JobNotFound(job_id)
        prefix: tuple[Any, ...] = (queue_id, job_id)
        rows = [(DEAD_LETTERS.pack(prefix), tr.get(DEAD_LETTERS.pack(prefix)))]
        rows = [(k, v) for k, v in rows if v is not None]
    else:
        bounds = DEAD_LETTERS.range((queue_id,) if queue_id is not None else ())
        rows = list(tr.get_range(*bounds, limit=1000))
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
    found = _lookup(tr, job_id)
    if found is None:
        return False
    if "s" in found[1]:
        return bool(found[1]["s"] == JobState.CANCELLED.value)
    keys = queue_keys(found[0])
    data = tr.get(keys.job(job_id))
    if data is None:
        return False
    job = Job.from_value(found[0], job_id, data)
    if job.state is JobState.LEASED and job.vis_ms > now:
        raise JobRunning(job_id)
    _finish(tr, keys, job, JobState.CANCELLED, now)
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
    for key, _ in rows:
        _, job_id = FINISHED.unpack(key)
        tr.clear(key)
        directory = JOB_DIRECTORY.pack((job_id,))
        entry = tr.get(directory)
        if entry is not None and "s" in unpack_value(entry):
            tr.clear(directory)
    return len(rows)


def purge_finished(
    db: Database, *, older_than_ms: int = FINISHED_RETENTION_MS, limit: int = 1000
) -> int:
    """Forget finished jobs' tombstones older than ``older_than_ms``; return how many."""
    return _purge_finished(db, now_ms() - older_than_ms, limit)
