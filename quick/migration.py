"""Moving queues, with their queued work, from one store to another (``quick migrate``).

Theory of operation
-------------------
:func:`migrate` is one *pass*; ``quick migrate`` repeats passes until nothing is left
(leased jobs wait for their consumers) or its timeout. A pass takes each queue in turn:

1. **Refuse** the queue while a workflow run on it is running or paused (a run's
   journal is ordered by its store's versionstamps, which mean nothing on another
   cluster, and its steps settle in the same transactions as its queue items), or
   when it was already moved to a third store.
2. **Mark** it moved on the source, ``("moved", queue)`` naming the destination,
   *before* copying: from the marker's commit every store of a new job there raises
   ``QueueMoved`` (see :mod:`quick.enqueueing`), so the copy chases no new arrivals.
   Runs are looked for again after marking; a run that slipped in unmarks the queue.
   A marker the destination held (the queue moving back) is then cleared.
3. **Finish an interrupted pass**: a job a killed pass left in the destination's
   staging area ``("mig", queue, job_id)`` is installed when the source holds its
   ``moved`` tombstone, and dropped otherwise (the source still has it, or ran it).
4. **Cron schedules** that target the queue are copied, then deleted from the source.
5. **Jobs** go best first (the ready index, then the scheduled index) in batches of
   at most :data:`BATCH_JOBS` jobs and :data:`BATCH_BYTES` bytes, three transactions
   per batch:

   a. *stage* (destination): each record is written under ``("mig", queue, job_id)``,
      where no consumer looks. An id the destination already knows is not staged:
      it is the same job (ids dedupe), so the source copy is a duplicate.
   b. *delete* (source, one transaction): each record is re-read serializably and
      deleted only if unchanged since it was read (a job claimed meanwhile is left for
      a later pass); each deleted job leaves a ``moved`` tombstone in the directory.
   c. *install* (destination): each deleted job's staged record becomes a job (record,
      index entry, directory entry, unique key); the counters get one atomic add per
      state for what was written, and the queue's pointer is made to cover the jobs.

   A job is claimable on the source until (b) commits, and on the destination only
   once (c) commits, so no consumer ever sees it in both stores. A kill between (a)
   and (b) leaves a staged copy that step 3 of the next pass drops; a kill between
   (b) and (c) leaves one whose tombstone step 3 finds, and installs.
6. **Dead letters** are copied with their directory entries, then deleted from the
   source after the same re-read; nothing runs a dead letter, so they need no staging.
7. **Clean up**: once the source queue holds no job and no dead letter, the rest of
   its range (counters, orphaned unique keys), its pointer and queue lease go.

Leased jobs stay put: a live lease means a consumer on the source is running the
job. Once it settles (or is put back) a later pass moves what is left. An *expired*
lease moves as the ready job a claim would promote it to.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import (
    CRON,
    CRON_DUE,
    DEAD_LETTERS,
    JOB_DIRECTORY,
    MIGRATING,
    MOVED,
    POINTER_INDEX,
    POINTERS,
    QUEUE_LEASES,
    QUEUES,
    WF_BY_STATUS,
    WF_RUNS,
    queue_keys,
)
from keyspace.protocol import Database, Transaction
from keyspace.retry import EarlierTries, transactional
from keyspace.subspace import Subspace
from quick import counters, pointers
from quick.counters import Tally
from quick.cron import decode_schedule
from quick.errors import InvalidArgument
from quick.jobs import Job, JobState, now_ms
from quick.records import finish_job, tombstone

__all__ = [
    "BATCH_BYTES",
    "BATCH_JOBS",
    "MigrationReport",
    "Refusal",
    "migrate",
]

#: Jobs (or dead letters) per copy transaction: a few hundred keep each well inside
#: FoundationDB's 5-second and 10 MB limits while a pass still moves thousands a second.
BATCH_JOBS = 200
#: Record bytes per copy transaction: FoundationDB advises under 1 MB per transaction.
BATCH_BYTES = 1_000_000
#: Keys per read transaction when listing queues, runs, schedules and staged jobs.
PAGE = 500
#: Most leftover job records a pass counts per queue for its report.
COUNT_LIMIT = 10_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A queue (or part of one) the pass did not move, and why."""

    queue: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationReport:
    """What one pass moved, and what it left.

    ``duplicates`` are source jobs whose id the destination already knew (deleted from
    the source without a copy); ``leased`` are jobs left because a consumer holds them;
    ``remaining`` counts the jobs still on the source in the queues the pass took.
    """

    queues: tuple[str, ...] = ()
    jobs: int = 0
    dead_letters: int = 0
    unique_keys: int = 0
    cron_schedules: int = 0
    duplicates: int = 0
    leased: int = 0
    remaining: int = 0
    refused: tuple[Refusal, ...] = ()

    @property
    def finished(self) -> bool:
        """True when every queue taken is empty on the source and none was refused."""
        return self.remaining == 0 and not self.refused

    def plus(self, later: MigrationReport) -> MigrationReport:
        """This pass followed by ``later``: sums of what moved, ``later``'s leftovers."""
        return MigrationReport(
            queues=tuple(dict.fromkeys(self.queues + later.queues)),
            jobs=self.jobs + later.jobs,
            dead_letters=self.dead_letters + later.dead_letters,
            unique_keys=self.unique_keys + later.unique_keys,
            cron_schedules=self.cron_schedules + later.cron_schedules,
            duplicates=self.duplicates + later.duplicates,
            leased=later.leased,
            remaining=later.remaining,
            refused=later.refused,
        )


@dataclass(slots=True)
class _Tally:
    """A pass's running totals (frozen into a report at the end)."""

    queues: list[str] = field(default_factory=list)
    jobs: int = 0
    dead_letters: int = 0
    unique_keys: int = 0
    cron_schedules: int = 0
    duplicates: int = 0
    leased: int = 0
    remaining: int = 0
    refused: list[Refusal] = field(default_factory=list)

    def report(self) -> MigrationReport:
        return MigrationReport(
            queues=tuple(self.queues),
            jobs=self.jobs,
            dead_letters=self.dead_letters,
            unique_keys=self.unique_keys,
            cron_schedules=self.cron_schedules,
            duplicates=self.duplicates,
            leased=self.leased,
            remaining=self.remaining,
            refused=tuple(self.refused),
        )


def migrate(
    source_db: Database,
    dest_db: Database,
    queue_ids: Iterable[str] | None = None,
    *,
    batch_size: int = BATCH_JOBS,
    now: int | None = None,
) -> MigrationReport:
    """Move queues with their jobs, dead letters and cron schedules to ``dest_db``: one pass.

    Run it again (``quick migrate`` does) until :attr:`MigrationReport.finished`: a pass
    leaves jobs consumers hold. Safe to rerun after a crash at any point; a rerun
    neither loses nor duplicates a job.

    Args:
        source_db: the store the queues live in now; producers and consumers may run on it.
        dest_db: the store to move them to; a queue it already holds is merged (job ids
            dedupe).
        queue_ids: the queues to move; all of the source's when None.
        batch_size: jobs per copy transaction (at most :data:`BATCH_JOBS` is advised).
        now: the clock, for tests.

    Returns:
        What moved, what was refused and why, and what is left.

    Raises:
        InvalidArgument: the destination is the source, or ``batch_size`` is below 1.
        StorageError: either store failed (no job is lost; rerun).
    """
    if _same_store(source_db.url, dest_db.url):
        raise InvalidArgument("dest_db", f"{dest_db.url} is the source store")
    if batch_size < 1:
        raise InvalidArgument("batch_size", "must be at least 1")
    clock = now_ms() if now is None else now
    tally = _Tally()
    if queue_ids is None:
        names = _source_queues(source_db, dest_db)
    else:
        names = list(dict.fromkeys(queue_ids))
    in_flight = _runs_in_flight(source_db, set(names))
    marked: dict[str, str] = {}
    for queue in names:
        if queue in in_flight:
            tally.refused.append(Refusal(queue, _run_reason(in_flight[queue])))
            continue
        outcome = source_db.transact(_mark, queue, describe_store(dest_db.url), clock)
        if outcome in ("new", "already"):
            marked[queue] = outcome
        else:
            tally.refused.append(Refusal(queue, f"already moved to {outcome}"))
    # A run started between the first look and the marker: unmark, refuse.
    for queue, run_id in _runs_in_flight(source_db, set(marked)).items():
        if marked.pop(queue) == "new":
            source_db.transact(_unmark, queue)
        tally.refused.append(Refusal(queue, _run_reason(run_id)))
    for queue in marked:
        _move_queue(source_db, dest_db, queue, clock, batch_size, tally)
    return tally.report()


def _run_reason(run_id: str) -> str:
    return (
        f"workflow run {run_id} on this queue is in flight; workflow runs do not move "
        "(wait for it to finish, or cancel it)"
    )


def describe_store(url: str) -> str:
    """``url`` as the moved marker names it: a sqlite path made absolute, so the name
    means the same from any working directory."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        return url
    path = unquote(parts.path)
    path = os.path.abspath(path[1:] if path.startswith("/") else path)
    return f"sqlite:///{path}" + (f"?{parts.query}" if parts.query else "")


def _same_store(a: str, b: str) -> bool:
    """True when two URLs name one keyspace (same file or cluster, same namespace)."""
    return _store_identity(a) == _store_identity(b)


def _store_identity(url: str) -> tuple[str, str, str | None]:
    parts = urlsplit(url)
    namespace = parse_qs(parts.query).get("namespace", [None])[-1]
    path = unquote(parts.path)
    if parts.scheme == "sqlite":
        path = os.path.realpath(path[1:] if path.startswith("/") else path)
    return parts.scheme, path, namespace


# -- which queues ----------------------------------------------------------------------


def _source_queues(source: Database, dest: Database) -> list[str]:
    """Every queue with anything on the source (jobs, counters, dead letters, cron
    targets), and every queue a killed pass left staged on the destination."""
    found = _distinct(source, QUEUES) + _distinct(source, DEAD_LETTERS)
    found += [item.queue_id for _, item in _schedules(source, None)]
    found += _distinct(dest, MIGRATING)
    return list(dict.fromkeys(found))


def _distinct(db: Database, space: Subspace) -> list[str]:
    """The distinct first elements of the keys under ``space`` (one read per name)."""
    out: list[str] = []
    begin: bytes | None
    begin, end = space.range()
    while begin is not None:
        names, begin = db.transact(_distinct_page, space, begin, end)
        out += names
    return out


def _distinct_page(
    tr: Transaction, space: Subspace, begin: bytes, end: bytes
) -> tuple[list[str], bytes | None]:
    names: list[str] = []
    for _ in range(PAGE):
        rows = tr.snapshot.get_range(begin, end, limit=1)
        if not rows:
            return names, None
        try:
            first = space.unpack(rows[0][0])[0]
        except (ValueError, IndexError):
            begin = rows[0][0] + b"\x00"
            continue
        if isinstance(first, str):
            names.append(first)
        begin = space.range((first,))[1]
    return names, begin


def _runs_in_flight(db: Database, queues: set[str]) -> dict[str, str]:
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


# -- one queue -------------------------------------------------------------------------


def _move_queue(
    source: Database, dest: Database, queue: str, now: int, batch_size: int, tally: _Tally
) -> None:
    dest.transact(_unmark, queue)
    tally.queues.append(queue)
    _recover(source, dest, queue, tally)
    _move_schedules(source, dest, queue, tally)
    keys = queue_keys(queue)
    for bounds in (keys.ready_range(), keys.scheduled_range()):
        _move_jobs(source, dest, queue, bounds, now, batch_size, tally)
    _move_dead(source, dest, queue, batch_size, tally)
    if not source.transact(_clean_up, queue):
        tally.remaining += source.transact(_count_jobs, queue)


@transactional
def _mark(tr: Transaction, queue: str, destination: str, now: int) -> str:
    """Mark ``queue`` moved to ``destination``: "new", "already", or the other store's URL."""
    key = MOVED.pack((queue,))
    data = tr.get(key)
    if data is not None:
        record = unpack_value(data)
        target = record.get("url") if isinstance(record, dict) else None
        return "already" if target == destination else str(target)
    tr.set(key, pack_value({"url": destination, "at": now}))
    return "new"


@transactional
def _unmark(tr: Transaction, queue: str) -> None:
    tr.clear(MOVED.pack((queue,)))


@transactional
def _count_jobs(tr: Transaction, queue: str) -> int:
    bounds = queue_keys(queue).space["j"].range()
    return len(tr.snapshot.get_range(*bounds, limit=COUNT_LIMIT))


@transactional
def _clean_up(tr: Transaction, queue: str) -> bool:
    """Delete what is left of an empty source queue; False while it holds jobs or letters.

    The job and dead-letter ranges are read serializably, so a job written meanwhile
    makes this retry and find it.
    """
    keys = queue_keys(queue)
    if tr.get_range(*keys.space["j"].range(), limit=1):
        return False
    if tr.get_range(*DEAD_LETTERS.range((queue,)), limit=1):
        return False
    tr.clear_range(*keys.space.range())
    pointer = pointers.read_pointer(tr, queue)
    if pointer is not None:
        tr.clear(POINTER_INDEX.pack((pointer["v"], queue)))
        tr.clear(POINTERS.pack((queue,)))
    tr.clear(QUEUE_LEASES.pack((queue,)))
    return True


# -- jobs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    """A job read from the source: its stored bytes, and the record to install."""

    job: Job
    value: bytes
    install: bytes


def _move_jobs(
    source: Database,
    dest: Database,
    queue: str,
    bounds: tuple[bytes, bytes],
    now: int,
    batch_size: int,
    tally: _Tally,
) -> None:
    """Move the jobs of one index of ``queue``, in index order, a batch at a time."""
    begin: bytes | None
    begin, end = bounds
    while begin is not None:
        batch, leased, begin = source.transact(_read_batch, queue, begin, end, now, batch_size)
        tally.leased += leased
        if not batch:
            continue
        staged, known, clashes = dest.transact(_stage, queue, batch)
        for item, holder in clashes:
            reason = (
                f"job {item.job.id}: unique key {item.job.unique_key!r} is held by job "
                f"{holder} on the destination; it stays on the source"
            )
            tally.refused.append(Refusal(queue, reason))
        taken = [item for item in batch if item.job.id in staged or item.job.id in known]
        deleted = source.transact(_delete, queue, taken, now)
        installed = [
            item.job.id for item in taken if item.job.id in deleted and item.job.id in staged
        ]
        dropped = [job_id for job_id in staged if job_id not in deleted]
        dest.transact(_install, queue, installed, dropped)
        # Counted from what the source deleted: those are installed now or, after a crash,
        # by the next pass (an install retried after an unknown result finds none left).
        tally.jobs += len(installed)
        tally.unique_keys += sum(
            1 for item in taken if item.job.id in installed and item.job.unique_key
        )
        tally.duplicates += sum(1 for job_id in known if job_id in deleted)


def _read_batch(
    tr: Transaction, queue: str, begin: bytes, end: bytes, now: int, batch_size: int
) -> tuple[list[_Item], int, bytes | None]:
    """The next jobs of one index from ``begin``: (movable jobs, leased jobs passed over,
    where the next batch starts or None at the end). Snapshot reads: the delete re-reads."""
    keys = queue_keys(queue)
    rows = tr.snapshot.get_range(begin, end, limit=batch_size)
    ids = [_job_id(keys.space, key) for key, _ in rows]
    values = tr.get_many([keys.job(job_id) for job_id in ids], snapshot=True)
    batch: list[_Item] = []
    leased, size = 0, 0
    after = None if len(rows) < batch_size else rows[-1][0] + b"\x00"
    for (key, _), job_id, value in zip(rows, ids, values, strict=True):
        if value is None:
            continue
        try:
            job = Job.from_value(queue, job_id, value)
        except CorruptValue:
            continue  # a consumer on the source dead-letters it; a later pass moves that
        if job.state is JobState.LEASED and job.vis_ms > now:
            leased += 1
            continue
        install = value
        if job.state is JobState.LEASED:  # an expired lease: the ready job a claim would see
            install = job.evolve(state=JobState.READY).to_value()
        batch.append(_Item(job, value, install))
        size += len(install)
        if size >= BATCH_BYTES:
            after = key + b"\x00"
            break
    return batch, leased, after


def _job_id(space: Subspace, index_key: bytes) -> str:
    """The job id that ends a ready- or scheduled-index key."""
    job_id = space.unpack(index_key)[-1]
    return str(job_id)


def _known(entry: bytes | None) -> bool:
    """True when a directory entry says the store holds (or held) the job itself; a
    ``moved`` tombstone does not count, so a queue can move back."""
    if entry is None:
        return False
    try:
        record = unpack_value(entry)
    except CorruptValue:
        return True
    return not (isinstance(record, dict) and record.get("s") == JobState.MOVED.value)


@transactional
def _stage(
    tr: Transaction, queue: str, batch: Sequence[_Item]
) -> tuple[set[str], set[str], list[tuple[_Item, str]]]:
    """Stage ``batch`` on the destination: (staged ids, ids it already knows, unique-key
    clashes with the job holding the key)."""
    keys = queue_keys(queue)
    entries = tr.get_many([JOB_DIRECTORY.pack((item.job.id,)) for item in batch])
    staged: set[str] = set()
    known: set[str] = set()
    clashes: list[tuple[_Item, str]] = []
    for item, entry in zip(batch, entries, strict=True):
        if _known(entry):
            known.add(item.job.id)
            continue
        if item.job.unique_key is not None:
            holder = tr.get(keys.unique(item.job.unique_key))
            if holder is not None and holder.decode() != item.job.id:
                clashes.append((item, holder.decode()))
                continue
        tr.set(MIGRATING.pack((queue, item.job.id)), item.install)
        staged.add(item.job.id)
    return staged, known, clashes


@transactional
def _delete(tr: Transaction, queue: str, batch: Sequence[_Item], now: int) -> set[str]:
    """Delete from the source each job of ``batch`` still as it was read; their ids.

    Each record is re-read serializably: a consumer claiming one first makes it differ
    (it stays); one claiming it after this read makes this transaction conflict.

    Retry semantics: a job already gone with a ``moved`` tombstone was deleted by an
    earlier try whose commit result was unknown, and counts as deleted.
    """
    keys = queue_keys(queue)
    values = tr.get_many([keys.job(item.job.id) for item in batch])
    gone = [item.job.id for item, value in zip(batch, values, strict=True) if value is None]
    deleted = _moved_away(tr, queue, gone) if gone else set()  # by an earlier try of this
    tally = Tally()
    for item, value in zip(batch, values, strict=True):
        if value != item.value:
            continue
        finish_job(tr, keys, item.job, JobState.MOVED, now, tally)
        deleted.add(item.job.id)
    tally.flush(tr)
    return deleted


@transactional
def _install(
    tr: Transaction, queue: str, job_ids: Sequence[str], dropped: Sequence[str]
) -> tuple[int, int]:
    """Turn staged jobs into jobs of ``queue`` and drop the staged ``dropped``:
    (jobs installed, unique keys taken). Counters get one atomic add per state."""
    keys = queue_keys(queue)
    for job_id in dropped:
        tr.clear(MIGRATING.pack((queue, job_id)))
    staged = tr.get_many([MIGRATING.pack((queue, job_id)) for job_id in job_ids])
    entries = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for job_id in job_ids])
    counts: dict[JobState, int] = {}
    earliest: int | None = None
    installed = uniques = 0
    for job_id, value, entry in zip(job_ids, staged, entries, strict=True):
        if value is None:
            continue
        tr.clear(MIGRATING.pack((queue, job_id)))
        if _known(entry):
            continue
        job = Job.from_value(queue, job_id, value)
        if job.unique_key is not None:
            holder = tr.get(keys.unique(job.unique_key))
            if holder is None or holder.decode() == job_id:
                tr.set(keys.unique(job.unique_key), job_id.encode())
                uniques += 1
            else:  # taken since staging: keep the job, drop its claim on the key
                job = job.evolve(unique_key=None)
                value = job.to_value()
        tr.set(keys.job(job_id), value)
        tr.set(job.index_key(keys), b"")
        tr.set(JOB_DIRECTORY.pack((job_id,)), pack_value({"q": queue}))
        counts[job.state] = counts.get(job.state, 0) + 1
        earliest = job.vis_ms if earliest is None else min(earliest, job.vis_ms)
        installed += 1
    for state, count in counts.items():
        counters.bump(tr, keys, state, count)
    if earliest is not None:
        pointers.ensure_visible(tr, queue, earliest)
    return installed, uniques


def _recover(source: Database, dest: Database, queue: str, tally: _Tally) -> None:
    """Install or drop what a killed pass left staged on the destination."""
    while True:
        rows = dest.transact(
            lambda tr: tr.snapshot.get_range(*MIGRATING.range((queue,)), limit=BATCH_JOBS)
        )
        if not rows:
            return
        job_ids = [str(MIGRATING.unpack(key)[1]) for key, _ in rows]
        moved = source.transact(_moved_away, queue, job_ids)
        installed = [job_id for job_id in job_ids if job_id in moved]
        dropped = [job_id for job_id in job_ids if job_id not in moved]
        count, uniques = dest.transact(_install, queue, installed, dropped)
        tally.jobs += count
        tally.unique_keys += uniques


@transactional
def _moved_away(tr: Transaction, queue: str, job_ids: Sequence[str]) -> set[str]:
    """The ids among ``job_ids`` the source deleted with a ``moved`` tombstone."""
    keys = queue_keys(queue)
    records = tr.get_many([keys.job(job_id) for job_id in job_ids], snapshot=True)
    entries = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for job_id in job_ids], snapshot=True)
    out = set()
    for job_id, record, entry in zip(job_ids, records, entries, strict=True):
        if record is None and entry is not None and not _known(entry):
            out.add(job_id)
    return out


# -- dead letters ----------------------------------------------------------------------


def _move_dead(
    source: Database, dest: Database, queue: str, batch_size: int, tally: _Tally
) -> None:
    begin, end = DEAD_LETTERS.range((queue,))
    while True:
        rows = source.transact(_read_dead, begin, end, batch_size)
        if not rows:
            return
        tally.dead_letters += dest.transact(_put_dead, queue, rows, EarlierTries())
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
    tr: Transaction, queue: str, rows: Sequence[tuple[bytes, bytes]], earlier: EarlierTries
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


# -- cron schedules --------------------------------------------------------------------


def _schedules(db: Database, queue: str | None) -> list[tuple[bytes, Any]]:
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


def _move_schedules(source: Database, dest: Database, queue: str, tally: _Tally) -> None:
    for value, item in _schedules(source, queue):
        if not dest.transact(_put_schedule, item.name, value, item.next_ms):
            reason = f"cron schedule {item.name!r}: the destination has another schedule so named"
            tally.refused.append(Refusal(queue, reason))
            continue
        if source.transact(_delete_schedule, item.name, value, EarlierTries()):
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
def _delete_schedule(tr: Transaction, name: str, value: bytes, earlier: EarlierTries) -> bool:
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
