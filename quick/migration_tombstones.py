"""Moving finished jobs' tombstones with their queues, so job ids still dedupe.

An enqueue with a job id the store has seen returns that id and adds nothing, even
once the job finished: the job directory keeps a tombstone, ``("id", job_id)`` with
the outcome, for :data:`~quick.operations.FINISHED_RETENTION_MS`, indexed by time under
``("done", done_ms, job_id)``. A queue moved without them would run a finished id
again when its producer retries on the new store. So a pass copies the tombstones of
the queues it took that are still within that retention, with their time index entry
(so the destination purges them on the same schedule) and their results (``("res",
job_id)``, :mod:`quick.results`), so ``quick.result`` answers on the destination as it
did on the source; a page of large results is written a few transactions at a time,
under the transaction size limit. The source keeps its own until
purged: they are harmless there (the queue is marked moved) and a copy loses nothing
if the pass is killed.

The directory is keyed by job id, not by queue, so this pages through the time index
once per pass (one range read and one batched directory read per page) and keeps the
entries of the pass's queues.
"""

from __future__ import annotations

from collections.abc import Sequence

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import FINISHED, JOB_DIRECTORY, RESULTS
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries, transactional
from quick.jobs import JobState
from quick.migration_report import PAGE, PassTally
from quick.operations import FINISHED_RETENTION_MS

__all__ = ["move_tombstones"]

#: The outcomes whose tombstones move: a job that ran (or was given up) on the source.
#: ``moved`` tombstones are the source's record of this very migration.
_MOVING_OUTCOMES = frozenset(
    state.value for state in (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)
)

#: (done_ms, job id, stored directory entry, stored result record or None)
_Tombstone = tuple[int, str, bytes, bytes | None]

#: Most result bytes one destination transaction writes (well under the 10 MB limit).
_RESULT_BYTES_PER_WRITE = 2_000_000


def move_tombstones(
    source: Database, dest: Database, queues: set[str], now: int, tally: PassTally
) -> None:
    """Copy to ``dest`` the retained tombstones of ``queues`` that it lacks."""
    if not queues:
        return
    begin: bytes | None = FINISHED.pack((now - FINISHED_RETENTION_MS,))
    end = FINISHED.range()[1]
    while begin is not None:
        found, begin = source.transact(_tombstone_page, queues, begin, end)
        for part in _parts(found):
            tally.tombstones += dest.transact(_put_tombstones, part, Tries())


def _parts(found: list[_Tombstone]) -> list[list[_Tombstone]]:
    """``found`` cut into runs whose results add up to at most a write's share."""
    parts: list[list[_Tombstone]] = []
    size = _RESULT_BYTES_PER_WRITE + 1
    for item in found:
        grown = size + len(item[3] or b"")
        if grown > _RESULT_BYTES_PER_WRITE and (not parts or parts[-1]):
            parts.append([])
            grown = len(item[3] or b"")
        parts[-1].append(item)
        size = grown
    return parts


def _tombstone_page(
    tr: Transaction, queues: set[str], begin: bytes, end: bytes
) -> tuple[list[_Tombstone], bytes | None]:
    rows = tr.snapshot.get_range(begin, end, limit=PAGE)
    more = rows[-1][0] + b"\x00" if len(rows) == PAGE else None
    listed: list[tuple[int, str]] = []
    for key, _ in rows:
        try:
            done_ms, job_id = FINISHED.unpack(key)
        except ValueError:
            continue
        if isinstance(done_ms, int) and isinstance(job_id, str):
            listed.append((done_ms, job_id))
    entries = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for _, job_id in listed], snapshot=True)
    kept = [
        (done_ms, job_id, entry)
        for (done_ms, job_id), entry in zip(listed, entries, strict=True)
        if entry is not None and _finished_in(entry, queues)
    ]
    results = tr.get_many([RESULTS.pack((job_id,)) for _, job_id, _ in kept], snapshot=True)
    found = [(*item, result) for item, result in zip(kept, results, strict=True)]
    return found, more


def _finished_in(entry: bytes, queues: set[str]) -> bool:
    """True for the tombstone of a job of ``queues`` that finished on this store."""
    try:
        record = unpack_value(entry)
    except CorruptValue:
        return False
    return (
        isinstance(record, dict)
        and record.get("q") in queues
        and record.get("s") in _MOVING_OUTCOMES
    )


@transactional
def _put_tombstones(tr: Transaction, found: Sequence[_Tombstone], earlier: Tries) -> int:
    """Write each tombstone whose id the destination does not know; how many (a retry
    that finds all written reports what its earlier try wrote)."""
    there = tr.get_many([JOB_DIRECTORY.pack((job_id,)) for _, job_id, _, _ in found])
    written = 0
    for (done_ms, job_id, entry, result), existing in zip(found, there, strict=True):
        if existing is not None:
            continue  # the destination knows the id: its own job or tombstone wins
        tr.set(JOB_DIRECTORY.pack((job_id,)), entry)
        tr.set(FINISHED.pack((done_ms, job_id)), b"")
        if result is not None:
            tr.set(RESULTS.pack((job_id,)), result)
        written += 1
    if not written and earlier.found:
        return earlier.found
    earlier.found = written
    return written
