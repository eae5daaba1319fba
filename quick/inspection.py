"""Looking at queues: job state, counts, listings of queues, jobs and dead letters.

Everything here only reads. (Operator actions that change the store, such as
requeueing or purging dead letters and cancelling jobs, live in :mod:`quick.operations`.)

Every reader here makes a few round trips however large the store (a remote cluster
ends a transaction at 5 seconds): records are fetched together with ``get_many``, and
:func:`read_all_queues` reads a page of queues per transaction.

Counts come from the per-queue atomic counters (no scans); they count jobs by the
index they sit in, so a scheduled job whose time has come still counts as
``scheduled`` (and an expired lease as ``leased``) until a claim promotes it.

Nothing read from the store is trusted, and each kind of record is decoded in one place.
The ``scan_*`` readers (the dashboard's) return a record that does not decode, or decodes
to the wrong shape, as a :class:`CorruptRecord` naming its key, in its place, so one
corrupt record never hides the others. The ``read_*`` listings (the CLI's) are the same
scans split by :meth:`Listing.of` into the good records and the corrupt ones;
the ``list_*`` functions are their good records alone.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import DEAD_LETTERS, FINISHED, POINTERS, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick import counters
from quick.corruption import UNREADABLE, CorruptRecord
from quick.cron import Schedule, scan_schedules
from quick.enqueueing import directory_entry
from quick.jobs import COUNTED_STATES, Job, JobState, now_ms
from quick.paging import read_pages
from quick.pointers import decode_pointer
from quick.validation import check_positive_ms

__all__ = [
    "BARE_DEAD_LETTER",
    "DeadLetter",
    "Listing",
    "decode_dead_letter",
    "scan_jobs",
    "scan_queues",
    "scan_dead",
    "get_dead",
    "oldest_ready_ms",
    "count_finished",
    "get_job",
    "job_state",
    "queue_counts",
    "list_queues",
    "queue_pages",
    "list_jobs",
    "list_dead",
    "read_queues",
    "read_all_queues",
    "count_finished_windows",
    "read_dead",
    "read_schedules",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A dead-lettered job: the job as it was, why it died, and when."""

    queue_id: str
    job_id: str
    error: str
    failed_ms: int
    job: Job | None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """What a ``read_*`` listing found: the good records, and the corrupt ones it skipped."""

    items: list[T] = field(default_factory=list)
    skipped: list[CorruptRecord] = field(default_factory=list)

    @classmethod
    def of(cls, scanned: Iterable[T | CorruptRecord]) -> Listing[T]:
        """A ``scan_*`` reader's answer split into good records and skipped ones, in order."""
        listing: Listing[T] = cls()
        for item in scanned:
            if isinstance(item, CorruptRecord):
                listing.skipped.append(item)
            else:
                listing.items.append(item)
        return listing


@transactional
def get_job(tr: Transaction, job_id: str) -> Job | None:
    """The stored job with ``job_id`` while it is pending or running, else None."""
    entry = directory_entry(tr, job_id)
    if entry is None:
        return None
    data = tr.get(queue_keys(entry["q"]).job(job_id))
    return None if data is None else Job.from_value(entry["q"], job_id, data)


@transactional
def _job_state(tr: Transaction, job_id: str, now: int) -> JobState | None:
    entry = directory_entry(tr, job_id)
    if entry is None:
        return None
    if "s" in entry:
        return JobState(entry["s"])
    data = tr.get(queue_keys(entry["q"]).job(job_id))
    if data is None:
        return None
    return Job.from_value(entry["q"], job_id, data).visible_state(now)


def job_state(db_or_tr: Database | Transaction, job_id: str) -> JobState | None:
    """``scheduled``, ``ready``, ``leased``, ``dead``, or the outcome of a finished job
    (``completed``, ``discarded``, ``cancelled``, kept for a day); None if unknown."""
    return _job_state(db_or_tr, job_id, now_ms())


@transactional
def queue_counts(tr: Transaction, queue_id: str) -> dict[str, int]:
    """``{state: count}`` for one queue, from its atomic counters."""
    return counters.read_counts(tr.snapshot, queue_id)


@transactional
def list_jobs(tr: Transaction, queue_id: str, *, limit: int = 100) -> list[Job]:
    """Jobs waiting or running in one queue: ready ones best first, then by visibility time
    (one that does not decode is left out; :func:`scan_jobs` names it)."""
    check_positive_ms("limit", limit)
    return [job for job in scan_jobs(tr, queue_id, limit=limit) if isinstance(job, Job)]


@transactional
def scan_jobs(tr: Transaction, queue_id: str, *, limit: int = 100) -> list[Job | CorruptRecord]:
    """Jobs waiting or running in one queue, in claim order: ready ones best first, then
    scheduled and leased ones by the time they become visible; undecodable ones as
    :class:`CorruptRecord`. At most three round trips: the two indexes, then every
    record at once."""
    keys = queue_keys(queue_id)
    ids = [
        keys.unpack_ready(k)[2] for k, _ in tr.snapshot.get_range(*keys.ready_range(), limit=limit)
    ]
    if len(ids) < limit:
        rows = tr.snapshot.get_range(*keys.scheduled_range(), limit=limit - len(ids))
        ids += [keys.unpack_scheduled(k)[1] for k, _ in rows]
    records = tr.get_many([keys.job(job_id) for job_id in ids], snapshot=True)
    jobs: list[Job | CorruptRecord] = []
    for job_id, data in zip(ids, records, strict=True):
        key = keys.job(job_id)
        if data is not None:
            try:
                jobs.append(Job.from_value(queue_id, job_id, data))
            except CorruptValue as error:
                jobs.append(CorruptRecord.of(key, error))
    return jobs


#: Ready-index entries :func:`oldest_ready_ms` reads at once: a queue with no more than
#: this many ready jobs is answered by that one read, whatever their priorities.
READY_SCAN = 64


@transactional
def oldest_ready_ms(
    tr: Transaction, queue_id: str, now: int, *, priorities: int = 32
) -> int | None:
    """When the longest-waiting job visible at ``now`` became visible; None if none is.

    The ready index is ordered by priority first. One read of its first
    :data:`READY_SCAN` entries answers a queue with no more ready jobs than that; past
    it, a skip scan reads the first entry of each further priority present (at most
    ``priorities`` reads). One more read finds the first scheduled entry (a due
    scheduled job or an expired lease waits since its time).
    """
    keys = queue_keys(queue_id)
    ready = keys.space["r"]
    begin, end = keys.ready_range()
    rows = tr.snapshot.get_range(begin, end, limit=READY_SCAN + 1)
    found = [keys.unpack_ready(key)[1] for key, _ in rows]
    if len(rows) > READY_SCAN:
        begin = ready.range((keys.unpack_ready(rows[-1][0])[0],))[1]
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
    return count_finished_windows(tr, [since_ms], limit=limit)[0]


@transactional
def count_finished_windows(
    tr: Transaction, since_ms: Sequence[int], *, limit: int = 10_000
) -> list[int]:
    """:func:`count_finished` for each of ``since_ms``, from one read of the newest
    ``limit`` entries of the finished-jobs index (a count that reaches ``limit`` means
    at least that many)."""
    if not since_ms:
        return []
    rows = tr.snapshot.get_range(
        FINISHED.pack((min(since_ms),)), FINISHED.range()[1], limit=limit, reverse=True
    )
    ascending = [key for key, _ in reversed(rows)]
    return [len(ascending) - bisect_left(ascending, FINISHED.pack((t,))) for t in since_ms]


def _counts_of(
    tr: Transaction, queues: list[str]
) -> list[tuple[dict[str, int], list[CorruptRecord]]]:
    """Each queue's counters, read for all of them in one round trip, and each counter
    that is not an 8-byte integer, named."""
    states = [state.value for state in COUNTED_STATES]
    keys = [queue_keys(queue).counter(state) for queue in queues for state in states]
    values = iter(zip(keys, tr.get_many(keys, snapshot=True), strict=True))
    out = []
    for _ in queues:
        counts = dict.fromkeys(states, 0)
        corrupt: list[CorruptRecord] = []
        for state in states:
            key, value = next(values)
            if value is None:
                continue
            try:
                counts[state] = counters.decode_count(value)
            except UNREADABLE as error:
                corrupt.append(
                    CorruptRecord(key=key, error=f"counter is not an 8-byte integer: {error}")
                )
        out.append((counts, corrupt))
    return out


def _queue_page(
    tr: Transaction, begin: bytes, limit: int
) -> tuple[list[dict[str, Any] | CorruptRecord], bytes | None]:
    """Up to ``limit`` pointers from key ``begin`` with their queues' counts, in two
    round trips; and the last pointer key read (None when the index ended)."""
    rows = tr.snapshot.get_range(begin, POINTERS.range()[1], limit=limit)
    decoded: list[tuple[str, dict[str, Any]] | CorruptRecord] = []
    for key, value in rows:
        try:
            (queue,) = POINTERS.unpack(key)
            if not isinstance(queue, str):
                raise CorruptValue(f"pointer key names queue {queue!r}, not a text")
            decoded.append((queue, decode_pointer(value)))
        except UNREADABLE as error:
            decoded.append(CorruptRecord.of(key, error))
    named = [item for item in decoded if not isinstance(item, CorruptRecord)]
    counted = iter(_counts_of(tr, [queue for queue, _ in named]))
    out: list[dict[str, Any] | CorruptRecord] = []
    for item in decoded:
        if isinstance(item, CorruptRecord):
            out.append(item)
            continue
        queue, pointer = item
        counts, corrupt = next(counted)
        out += corrupt
        out.append(
            {
                "queue": queue,
                "next_visible_ms": pointer["v"],
                "empty_since_ms": pointer["es"],
                "counts": counts,
            }
        )
    last = rows[-1][0] if limit and len(rows) >= limit else None
    return out, last


@transactional
def scan_queues(
    tr: Transaction, *, limit: int = 1000, after: str | None = None
) -> list[dict[str, Any] | CorruptRecord]:
    """Queues that have a pointer, by name (those after ``after``), with their pointer time
    and counts; a corrupt pointer as a :class:`CorruptRecord` in its place, and each
    corrupt counter as one just before its queue. Two round trips: the pointers, then
    every counter of every queue at once."""
    begin = POINTERS.range()[0] if after is None else POINTERS.pack((after,)) + b"\x00"
    return _queue_page(tr, begin, limit)[0]


@transactional
def read_queues(
    tr: Transaction, *, limit: int = 1000, after: str | None = None
) -> Listing[dict[str, Any]]:
    """Queues that have a pointer, by name (those after ``after``), with their pointer time
    and counts; corrupt pointers and counters are skipped and named."""
    return Listing.of(scan_queues(tr, limit=limit, after=after))


#: Queues :func:`read_all_queues` reads per transaction (two round trips each).
QUEUE_PAGE = 500


def read_all_queues(
    db_or_tr: Database | Transaction, *, page: int = QUEUE_PAGE
) -> Listing[dict[str, Any]]:
    """Every queue that has a pointer, by name, with its pointer time and counts;
    corrupt pointers and counters are skipped and named.

    Given a database, each page of ``page`` queues is read in its own transaction (see
    :mod:`quick.paging`), so a store of any size lists without passing FoundationDB's
    5-second limit. Each page is one snapshot; the listing as a whole is not: a queue
    created or emptied while it runs may or may not appear, and the counts of queues on
    different pages are from different moments. Given a transaction, every page is read
    in it.
    """
    check_positive_ms("page", page)
    return Listing.of(
        read_pages(db_or_tr, lambda tr, begin: _queue_page(tr, begin, page), POINTERS.range()[0])
    )


def queue_pages(
    db: Database, *, after: str | None = None, page: int = QUEUE_PAGE
) -> Iterator[Listing[dict[str, Any]]]:
    """Every queue that has a pointer, by name (those after ``after``), a page of ``page``
    queues at a time, each page read in its own transaction (as :func:`read_all_queues`
    reads them) and yielded as soon as it is read: a caller shows the first queues of a
    store of a million at once, and stops reading when it has enough."""
    check_positive_ms("page", page)
    cursor: bytes | None = (
        POINTERS.range()[0] if after is None else POINTERS.pack((after,)) + b"\x00"
    )
    while cursor is not None:
        found, last = db.transact(_queue_page, cursor, page)
        yield Listing.of(found)
        cursor = None if last is None else last + b"\x00"


def list_queues(
    db_or_tr: Database | Transaction, *, limit: int = 1000, after: str | None = None
) -> list[dict[str, Any]]:
    """Queues that have a pointer, by name, with their pointer time and counts (corrupt
    records are left out; :func:`read_queues` names them)."""
    return read_queues(db_or_tr, limit=limit, after=after).items


#: The error of a dead letter stored as its bare job record (too large for any other
#: form, see :func:`quick.records.bury_job`); its time is the record's visibility time.
BARE_DEAD_LETTER = "dead-lettered as stored: the job record was too large to lease or fail"


def decode_dead_letter(queue: str, job_id: str, value: bytes) -> DeadLetter:
    """The dead letter stored as ``value``, in any of :func:`quick.records.bury_job`'s
    forms (and ``bury_corrupt``'s, whose raw record does not decode: ``job`` is None).

    Raises:
        CorruptValue: the record does not decode, or not to a dead letter.
    """
    record = unpack_value(value)
    if not isinstance(record, dict):
        raise CorruptValue(f"dead letter is a {type(record).__name__}, not a map")
    if "at" not in record:  # bury_job's last form: the bare job record, or corrupt
        try:
            bare = Job.from_value(queue, job_id, value)
        except CorruptValue:
            raise CorruptValue(
                f"dead letter without an error, nor a job record: {record!r}"
            ) from None
        return DeadLetter(
            queue_id=queue, job_id=job_id, error=BARE_DEAD_LETTER, failed_ms=bare.vis_ms, job=bare
        )
    error, failed, raw = record.get("e"), record.get("at"), record.get("raw")
    if not isinstance(error, str) or not isinstance(failed, int):
        raise CorruptValue(f"dead letter without a text error and an integer time: {record!r}")
    if raw is not None and not isinstance(raw, bytes):
        raise CorruptValue(f"dead letter's raw job is a {type(raw).__name__}")
    job = None
    stored = record.get("jr", raw)  # a raw record too large to wrap decodes; a corrupt one not
    if stored is not None:
        try:
            job = Job.from_value(queue, job_id, stored)
        except CorruptValue:
            job = None
    return DeadLetter(
        queue_id=queue, job_id=job_id, error=error, failed_ms=failed, job=job, raw=raw
    )


@transactional
def read_dead(
    tr: Transaction, queue_id: str | None = None, *, limit: int = 100
) -> Listing[DeadLetter]:
    """Dead letters, of one queue or all, in queue then job-id order; corrupt ones are
    skipped and named."""
    return Listing.of(scan_dead(tr, queue_id, limit=limit))


def list_dead(
    db_or_tr: Database | Transaction, queue_id: str | None = None, *, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters, of one queue or all, in queue then job-id order (corrupt ones are
    left out; :func:`read_dead` names them)."""
    return read_dead(db_or_tr, queue_id, limit=limit).items


def read_schedules(db_or_tr: Database | Transaction) -> Listing[Schedule]:
    """Every cron schedule, by name; corrupt ones are skipped and named (the records are
    decoded, and read in pages, by :func:`quick.cron.scan_schedules`)."""
    return Listing.of(scan_schedules(db_or_tr))


def _dead_or_corrupt(key: bytes, value: bytes) -> DeadLetter | CorruptRecord:
    try:
        queue, job_id = DEAD_LETTERS.unpack(key)
        if not isinstance(queue, str) or not isinstance(job_id, str):
            raise CorruptValue("dead-letter key without a text queue and job id")
        return decode_dead_letter(queue, job_id, value)
    except UNREADABLE as error:
        return CorruptRecord.of(key, error)


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


@transactional
def get_dead(tr: Transaction, queue_id: str, job_id: str) -> DeadLetter | CorruptRecord | None:
    """One dead letter, a :class:`CorruptRecord` when it does not decode, or None."""
    key = DEAD_LETTERS.pack((queue_id, job_id))
    value = tr.snapshot.get(key)
    return None if value is None else _dead_or_corrupt(key, value)
