"""Moving queues, with their queued work, from one store to another (``quick migrate``).

Theory of operation
-------------------
:func:`migrate` is one *pass*; ``quick migrate`` repeats passes until nothing is left
(leased jobs wait for their consumers, queues another pass holds wait for it) or its
timeout. A pass first checks its input, changing nothing when it is bad: named queues
must exist on the source (:mod:`quick.migration_queues`), and the destination must
not be the source under another name. Stores are told apart by content, not by URL:
each keyspace (a store and namespace) carries an identity key written once
(:mod:`keyspace.identity`); reading the destination's is also the probe that it
answers, before the source changes. Then, for the queues:

1. **Refuse** a queue while a workflow run on it is running or paused (a run's
   journal is ordered by its store's versionstamps, which mean nothing on another
   cluster, and its steps settle in the same transactions as its queue items), or
   when it was already moved to a third store.
2. **Mark** it moved on the source, ``("moved", queue)`` naming the destination,
   *before* copying: from the marker's commit every store of a new job there raises
   ``QueueMoved`` (see :mod:`quick.enqueueing`), so the copy chases no new arrivals.
   Runs are looked for again after marking; a run that slipped in unmarks the queue.

The **tombstones** of the marked queues' finished jobs, within their retention, are
copied next (:mod:`quick.migration_tombstones`), so a finished id still dedupes when a
producer the marker turned away retries it on the destination.

Each marked queue then moves on its own (up to :data:`QUEUE_THREADS` at once), under
its **migration lease** in both stores (:mod:`quick.migration_lease`): a queue another
pass holds is left to it and reported ``busy``, and every transaction below checks
and renews the lease, so two passes never work on one queue (one's recovery would
drop what the other staged). A marker the destination held (the queue moving back)
is cleared as its lease is taken.

3. **Finish an interrupted pass**: a job (or dead letter) a killed pass left in the
   destination's staging area ``("mig", queue, job_id)`` (``("migd", ...)``) is
   installed when the source holds its ``moved`` tombstone, and dropped otherwise
   (the source still has it, or ran or purged it).
4. **Cron schedules** that target the queue are copied, then deleted from the source
   (:mod:`quick.migration_records`).
5. **Jobs** (:mod:`quick.migration_jobs`) go best first (the ready index, then the
   scheduled index) in batches of at most :data:`BATCH_JOBS` jobs and
   :data:`BATCH_BYTES` bytes, three transactions per batch:

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
6. **Dead letters** (:mod:`quick.migration_dead`) move in the same three steps, so
   one purged on the source mid-copy leaves no copy behind.
7. **Clean up**: once the source queue holds no job and no dead letter, the rest of
   its range (counters, orphaned unique keys), its pointer and queue lease go.

Leased jobs stay put: a live lease means a consumer on the source is running the
job. Once it settles (or is put back) a later pass moves what is left. An *expired*
lease moves as the ready job a claim would promote it to.

Every transaction makes a few batched reads (pages by key, ``get_many``, counters for
counts), so none nears FoundationDB's 5 seconds on a remote cluster.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlsplit

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.identity import store_identity
from keyspace.layout import (
    DEAD_LETTERS,
    MOVED,
    POINTER_INDEX,
    POINTERS,
    QUEUE_LEASES,
    queue_keys,
)
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick import counters, pointers
from quick.errors import InvalidArgument
from quick.jobs import JobState, now_ms
from quick.migration_dead import move_dead_letters, recover_dead
from quick.migration_jobs import move_jobs, recover
from quick.migration_lease import Fenced, LeaseTaken, acquire, release_quietly
from quick.migration_queues import run_reason, runs_in_flight, source_queues, unknown_queues
from quick.migration_records import move_schedules, schedules
from quick.migration_report import (
    BATCH_BYTES,
    BATCH_JOBS,
    PAGE,
    QUEUE_THREADS,
    MigrationReport,
    PassTally,
    Refusal,
)
from quick.migration_tombstones import move_tombstones
from quick.validation import check_name

__all__ = [
    "BATCH_BYTES",
    "BATCH_JOBS",
    "MigrationReport",
    "Refusal",
    "describe_store",
    "migrate",
]


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
    leaves jobs consumers hold, and queues another pass is moving. Safe to rerun after a
    crash at any point, and to run twice at once; neither loses nor duplicates a job.

    Args:
        source_db: the store the queues live in now; producers and consumers may run on it.
        dest_db: the store to move them to; a queue it already holds is merged (job ids
            dedupe).
        queue_ids: the queues to move; all of the source's when None.
        batch_size: jobs per copy transaction (at most :data:`BATCH_JOBS` is advised).
        now: the clock, for tests.

    Returns:
        What moved, what was refused and why, what another pass holds, and what is left.

    Raises:
        InvalidArgument: the destination is the source (by content, however spelled), a
            queue name is empty or names no queue of the source, or ``batch_size`` is
            below 1. Nothing is changed (but for each store's identity key, written the
            first time a store is looked at).
        StorageError: either store failed (no job is lost; rerun).
    """
    if batch_size < 1:
        raise InvalidArgument("batch_size", "must be at least 1")
    names = None if queue_ids is None else _checked_names(queue_ids)
    if names is not None:
        unknown = unknown_queues(source_db, dest_db, names)
        if unknown:
            listed = ", ".join(repr(queue) for queue in unknown)
            raise InvalidArgument("queue_ids", f"no such queue on the source: {listed}")
    # The destination first: an unreachable one fails here, before the source changes.
    if store_identity(dest_db) == store_identity(source_db):
        raise InvalidArgument(
            "dest_db",
            f"{dest_db.url} is the source store ({source_db.url}) under another name; "
            "a store cannot be migrated onto itself",
        )
    clock = now_ms() if now is None else now
    owner = uuid.uuid4().hex  # this pass, in every migration lease it takes
    tally = PassTally()
    if names is None:
        names = source_queues(source_db, dest_db)
    in_flight = runs_in_flight(source_db, set(names))
    for queue, run_id in in_flight.items():
        tally.refused.append(Refusal(queue, run_reason(run_id)))
    marked: dict[str, str] = {}
    destination = describe_store(dest_db.url)
    wanted = [queue for queue in names if queue not in in_flight]
    for start in range(0, len(wanted), PAGE):
        outcomes = source_db.transact(_mark, wanted[start : start + PAGE], destination, clock)
        for queue, outcome in outcomes.items():
            if outcome in ("new", "already"):
                marked[queue] = outcome
            else:
                tally.refused.append(Refusal(queue, f"already moved to {outcome}"))
    # A run started between the first look and the marker: unmark, refuse.
    for queue, run_id in runs_in_flight(source_db, set(marked)).items():
        if marked.pop(queue) == "new":
            source_db.transact(_unmark, queue)
        tally.refused.append(Refusal(queue, run_reason(run_id)))
    # Finished ids before the jobs: producers turned away by the marker retry on the
    # destination, where a finished id must already dedupe.
    move_tombstones(source_db, dest_db, set(marked), clock, tally)
    found = schedules(source_db, None)

    # An interruption (an error in one queue's thread, Ctrl-C) stops the others at their
    # next transaction, rather than after their whole queue.
    stop = threading.Event()

    def move(queue: str) -> PassTally:
        own = PassTally()
        _move_queue(source_db, dest_db, queue, clock, batch_size, found, own, owner, stop)
        return own

    # Queues are independent (each under its own leases), so several move at once:
    # a queue costs a dozen round trips, which a remote cluster makes add up.
    with ThreadPoolExecutor(max_workers=QUEUE_THREADS, thread_name_prefix="migrate") as pool:
        try:
            for own in pool.map(move, marked):
                tally.absorb(own)
        except BaseException:
            stop.set()
            raise
    return tally.report()


def _checked_names(queue_ids: Iterable[str]) -> list[str]:
    """The named queues, each a valid queue id, without repeats."""
    if isinstance(queue_ids, str):
        raise InvalidArgument("queue_ids", "must be a list of queue ids, not one string")
    names = [check_name("queue_ids", queue) for queue in queue_ids]
    return list(dict.fromkeys(name for name in names if name is not None))


def describe_store(url: str) -> str:
    """``url`` as the moved marker names it: a sqlite path made absolute, so the name
    means the same from any working directory."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        return url
    path = unquote(parts.path)
    path = os.path.abspath(path[1:] if path.startswith("/") else path)
    return f"sqlite:///{path}" + (f"?{parts.query}" if parts.query else "")


# -- one queue -------------------------------------------------------------------------


def _move_queue(
    source_db: Database,
    dest_db: Database,
    queue: str,
    now: int,
    batch_size: int,
    found: Sequence[tuple[bytes, Any]],
    tally: PassTally,
    owner: str,
    stop: threading.Event,
) -> None:
    """Move ``queue`` under its migration lease in both stores; a queue another pass
    holds (or takes over meanwhile) is left to it and reported busy."""
    if not acquire(source_db, queue, owner, now_ms()):
        tally.busy.append(queue)
        return
    try:
        if not _take_destination(dest_db, queue, owner, now_ms()):
            tally.busy.append(queue)
            return
        try:
            source = Fenced(source_db, queue, owner, stop)
            dest = Fenced(dest_db, queue, owner, stop)
            _move_held(source, dest, queue, now, batch_size, found, tally)
        except LeaseTaken:
            tally.busy.append(queue)
        finally:
            release_quietly(dest_db, queue, owner)
    finally:
        release_quietly(source_db, queue, owner)


def _move_held(
    source: Fenced,
    dest: Fenced,
    queue: str,
    now: int,
    batch_size: int,
    found: Sequence[tuple[bytes, Any]],
    tally: PassTally,
) -> None:
    """Move a queue whose leases this pass holds."""
    tally.queues.append(queue)
    recover(source, dest, queue, tally)
    recover_dead(source, dest, queue, now, tally)
    move_schedules(source, dest, queue, found, tally)
    keys = queue_keys(queue)
    for bounds in (keys.ready_range(), keys.scheduled_range()):
        move_jobs(source, dest, queue, bounds, now, batch_size, tally)
    move_dead_letters(source, dest, queue, now, batch_size, tally)
    if not source.transact(_clean_up, queue):
        tally.remaining += source.transact(_count_jobs, queue)


@transactional
def _take_destination(tr: Transaction, queue: str, owner: str, now: int) -> bool:
    """Take ``queue``'s lease on the destination and clear the marker it holds if the
    queue once moved away from it (it is moving back); False while another pass holds it."""
    if not acquire(tr, queue, owner, now):
        return False
    tr.clear(MOVED.pack((queue,)))
    return True


@transactional
def _mark(tr: Transaction, queues: Sequence[str], destination: str, now: int) -> dict[str, str]:
    """Mark each of ``queues`` moved to ``destination`` (one batched read): for each,
    "new", "already", or the other store's URL."""
    keys = [MOVED.pack((queue,)) for queue in queues]
    outcomes: dict[str, str] = {}
    for queue, key, data in zip(queues, keys, tr.get_many(keys), strict=True):
        if data is not None:
            try:
                record = unpack_value(data)
            except CorruptValue:
                record = None
            target = record.get("url") if isinstance(record, dict) else None
            if target == destination:
                outcomes[queue] = "already"
            else:
                outcomes[queue] = str(target) if target else "a store its marker does not name"
            continue
        tr.set(key, pack_value({"url": destination, "at": now}))
        outcomes[queue] = "new"
    return outcomes


@transactional
def _unmark(tr: Transaction, queue: str) -> None:
    tr.clear(MOVED.pack((queue,)))


@transactional
def _count_jobs(tr: Transaction, queue: str) -> int:
    """The jobs left in ``queue``, from its counters (no job record is read)."""
    counts = counters.read_counts(tr.snapshot, queue)
    return sum(
        counts[state.value] for state in (JobState.READY, JobState.SCHEDULED, JobState.LEASED)
    )


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
