"""Moving a queue's jobs between stores: stage, delete, install (``quick migrate``).

See :mod:`quick.migration` for the pass; this module is its step 3 (finishing an
interrupted pass, :func:`recover`) and step 5 (the jobs, :func:`move_jobs`). A job is
claimable on the source until its delete commits, and on the destination only once its
install commits, so no consumer ever sees it in both stores.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import JOB_DIRECTORY, MIGRATING, QueueKeys, queue_keys
from keyspace.protocol import Transaction
from keyspace.retry import transactional
from keyspace.subspace import Subspace
from quick.counters import Tally
from quick.jobs import Job, JobState
from quick.migration_lease import Fenced
from quick.migration_report import BATCH_BYTES, BATCH_JOBS, PassTally, Refusal
from quick.records import NewJobs, finish_job

__all__ = ["Fate", "is_known", "move_jobs", "recover", "staged_fate", "sweep_staged"]


@dataclass(frozen=True, slots=True)
class _Item:
    """A job read from the source: its stored bytes, and the record to install."""

    job: Job
    value: bytes
    install: bytes


def move_jobs(
    source: Fenced,
    dest: Fenced,
    queue: str,
    bounds: tuple[bytes, bytes],
    now: int,
    batch_size: int,
    tally: PassTally,
) -> None:
    """Move the jobs of one index of ``queue``, in index order, a batch at a time."""
    begin: bytes | None
    begin, end = bounds
    while begin is not None:
        batch, leased, begin = source.db.transact(_read_batch, queue, begin, end, now, batch_size)
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
    if not rows:
        return [], 0, None
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


def is_known(entry: bytes | None) -> bool:
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
    holders = _unique_holders(tr, keys, [item.job for item in batch])
    staged: set[str] = set()
    known: set[str] = set()
    clashes: list[tuple[_Item, str]] = []
    for item, entry in zip(batch, entries, strict=True):
        if is_known(entry):
            known.add(item.job.id)
            continue
        if item.job.unique_key is not None:
            holder = holders[item.job.unique_key]
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
    jobs = [
        None if value is None else Job.from_value(queue, job_id, value)
        for job_id, value in zip(job_ids, staged, strict=True)
    ]
    holders = _unique_holders(tr, keys, [job for job in jobs if job is not None])
    new = NewJobs()
    installed = uniques = 0
    for job_id, value, entry, job in zip(job_ids, staged, entries, jobs, strict=True):
        if value is None or job is None:
            continue
        tr.clear(MIGRATING.pack((queue, job_id)))
        if is_known(entry):
            continue
        if job.unique_key is not None:
            holder = holders[job.unique_key]
            if holder is None or holder.decode() == job_id:
                holders[job.unique_key] = job_id.encode()
                uniques += 1
            else:  # taken since staging: keep the job, drop its claim on the key
                job = job.evolve(unique_key=None)
                value = job.to_value()
        new.add(tr, job, value)
        installed += 1
    new.flush(tr)
    return installed, uniques


def _unique_holders(
    tr: Transaction, keys: QueueKeys, jobs: Sequence[Job]
) -> dict[str, bytes | None]:
    """``{unique key: id of the job holding it, or None}`` for the keys ``jobs`` carry,
    in one batched read."""
    wanted = list(dict.fromkeys(job.unique_key for job in jobs if job.unique_key is not None))
    if not wanted:
        return {}
    held = tr.get_many([keys.unique(unique) for unique in wanted])
    return dict(zip(wanted, held, strict=True))


class Fate(enum.Enum):
    """What becomes of a record a killed pass left staged on the destination."""

    INSTALL = "install"  # the source deleted it, moved: it lives on here now
    DROP = "drop"  # the source still holds it, or it ended there
    KEEP = "keep"  # the source never knew it: another source's pass staged it


def staged_fate(on_source: bytes | None, entry: bytes | None) -> Fate:
    """The fate of a staged record from what the source holds for its id: the record
    itself (a job, or a dead letter) and its directory entry."""
    if on_source is not None:
        return Fate.DROP
    if entry is None:
        return Fate.KEEP
    return Fate.DROP if is_known(entry) else Fate.INSTALL


def recover(source: Fenced, dest: Fenced, queue: str, tally: PassTally) -> None:
    """Install or drop what a killed pass from this source left staged on the
    destination (what another source's pass staged is left for its rerun)."""

    def settle(installed: list[str], dropped: list[str]) -> None:
        count, uniques = dest.transact(_install, queue, installed, dropped)
        tally.jobs += count
        tally.unique_keys += uniques

    sweep_staged(source, dest, MIGRATING, queue, _staged_fates, settle)


def sweep_staged(
    source: Fenced,
    dest: Fenced,
    space: Subspace,
    queue: str,
    fates: Callable[[Transaction, str, Sequence[str]], list[Fate]],
    settle: Callable[[list[str], list[str]], None],
) -> None:
    """Page through the ids staged for ``queue`` under ``space`` on the destination,
    ask the source their :class:`Fate` (``fates``, a transactional function), and pass
    each page's ids to install and to drop to ``settle``."""
    begin: bytes | None
    begin, end = space.range((queue,))
    while begin is not None:
        rows = dest.db.transact(lambda tr, b=begin: tr.snapshot.get_range(b, end, limit=BATCH_JOBS))
        begin = rows[-1][0] + b"\x00" if len(rows) == BATCH_JOBS else None
        if not rows:
            return
        size = 0
        for count, (key, value) in enumerate(rows, 1):  # an install rewrites every value
            size += len(value)
            if size >= BATCH_BYTES:
                rows, begin = rows[:count], key + b"\x00"
                break
        job_ids = [str(space.unpack(key)[1]) for key, _ in rows]
        found = source.db.transact(fates, queue, job_ids)
        chosen = list(zip(job_ids, found, strict=True))
        installed = [job_id for job_id, fate in chosen if fate is Fate.INSTALL]
        dropped = [job_id for job_id, fate in chosen if fate is Fate.DROP]
        if installed or dropped:
            settle(installed, dropped)


@transactional
def _staged_fates(tr: Transaction, queue: str, job_ids: Sequence[str]) -> list[Fate]:
    keys = queue_keys(queue)
    records = tr.get_many([keys.job(job_id) for job_id in job_ids], snapshot=True)
    entries = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for job_id in job_ids], snapshot=True)
    return [staged_fate(record, entry) for record, entry in zip(records, entries, strict=True)]


@transactional
def _moved_away(tr: Transaction, queue: str, job_ids: Sequence[str]) -> set[str]:
    """The ids among ``job_ids`` the source deleted with a ``moved`` tombstone."""
    fates = _staged_fates(tr, queue, job_ids)
    return {job_id for job_id, fate in zip(job_ids, fates, strict=True) if fate is Fate.INSTALL}
