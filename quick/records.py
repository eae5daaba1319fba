"""Reading and writing job records with their index entries, counters and tombstones.

Every change of a job's state goes through here, so a record, its one index entry
(ready or scheduled, see :mod:`quick.jobs`) and its queue's counters always move
together. Counter moves go to a :class:`~quick.counters.Tally` when the caller batches
them, else straight to the transaction.
"""

from __future__ import annotations

import logging

from keyspace.codec import pack_value
from keyspace.layout import DEAD_LETTERS, FINISHED, JOB_DIRECTORY, QueueKeys, describe
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Transaction
from quick import counters
from quick.counters import Tally
from quick.jobs import Job, JobState

__all__ = [
    "MAX_ERROR_BYTES",
    "JOB_RECORD_HEADROOM",
    "MAX_JOB_RECORD_BYTES",
    "load_job",
    "store_job",
    "finish_job",
    "bury_job",
    "bury_corrupt",
    "repair_entry",
    "drop_entry",
    "tombstone",
    "truncate_error",
]


log = logging.getLogger("quick.store")


def load_job(tr: Transaction, keys: QueueKeys, job_id: str) -> Job | None:
    """The job record, or None; CorruptValue when the stored bytes are not one."""
    data = tr.get(keys.job(job_id))
    if data is None:
        return None
    return Job.from_value(keys.queue, job_id, data)


def _count(
    tr: Transaction, tally: Tally | None, keys: QueueKeys, old: JobState | None, new: JobState
) -> None:
    if tally is None:
        counters.move(tr, keys, old, new)
    else:
        tally.move(keys, old, new)


def store_job(
    tr: Transaction,
    keys: QueueKeys,
    old: Job | None,
    new: Job,
    tally: Tally | None = None,
    *,
    value: bytes | None = None,
) -> int:
    """Write ``new`` (``value`` if already encoded), moving its index entry and count
    from ``old``'s; return the record's size in bytes."""
    new_index = new.index_key(keys)
    if old is None:
        tr.set(new_index, b"")
    else:
        old_index = old.index_key(keys)
        if old_index != new_index:
            tr.clear(old_index)
            tr.set(new_index, b"")
    if value is None:
        value = new.to_value()
    tr.set(keys.job(new.id), value)
    old_state = old.state if old is not None else None
    if old_state is not new.state:
        _count(tr, tally, keys, old_state, new.state)
    return len(value)


def tombstone(queue: str, outcome: str, now: int, token: str | None) -> bytes:
    """A finished job's directory entry: where it was, how it ended, and which claim."""
    return pack_value({"q": queue, "s": outcome, "at": now, "k": token})


def _remove(tr: Transaction, keys: QueueKeys, job: Job) -> None:
    tr.clear(keys.job(job.id))
    tr.clear(job.index_key(keys))
    if job.unique_key is not None:
        tr.clear(keys.unique(job.unique_key))


def finish_job(
    tr: Transaction,
    keys: QueueKeys,
    job: Job,
    outcome: JobState,
    now: int,
    tally: Tally | None = None,
) -> None:
    """Remove ``job`` and leave its tombstone in the job directory (purged later)."""
    _remove(tr, keys, job)
    if tally is None:
        counters.move(tr, keys, job.state, None)
    else:
        tally.move(keys, job.state, None)
    tr.set(JOB_DIRECTORY.pack((job.id,)), tombstone(job.queue, outcome.value, now, job.token))
    tr.set(FINISHED.pack((now, job.id)), b"")


def bury_job(
    tr: Transaction, keys: QueueKeys, job: Job, error: str, now: int, tally: Tally | None = None
) -> None:
    """Move ``job`` to the dead letters with ``error``, in a value that fits the limit.

    The dead letter is ``{"jr": record with the error, "e", "at"}``. A job stored
    before enqueue kept :data:`JOB_RECORD_HEADROOM` free may not fit that way; its dead
    letter is then ``{"raw": the record as stored, "e": a short note, "at"}``, and
    when even that is over the limit, the stored record itself, unchanged (it fitted
    when stored). No form loses the payload; :func:`quick.inspection.decode_dead_letter`
    reads all three.
    """
    stored = tr.get(keys.job(job.id))
    _remove(tr, keys, job)
    _count(tr, tally, keys, job.state, JobState.DEAD)
    tr.set(DEAD_LETTERS.pack((job.queue, job.id)), _dead_letter(job, stored, error, now))
    tr.set(JOB_DIRECTORY.pack((job.id,)), tombstone(job.queue, "dead", now, job.token))


def _dead_letter(job: Job, stored: bytes | None, error: str, now: int) -> bytes:
    """The first of bury_job's three dead-letter forms that fits the value limit."""
    dead = job.evolve(last_error=error, owner=None).to_value()
    full = pack_value({"jr": dead, "e": error, "at": now})
    if len(full) <= VALUE_LIMIT:
        return full
    raw = dead if stored is None else stored
    note = f"{error[:200]} (dead letter of {len(full)} bytes too large: kept as stored)"
    wrapped = pack_value({"raw": raw, "e": note, "at": now})
    return wrapped if len(wrapped) <= VALUE_LIMIT else raw


def bury_corrupt(
    tr: Transaction,
    keys: QueueKeys,
    job_id: str,
    index_key: bytes,
    state: JobState,
    error: str,
    now: int,
) -> None:
    """Move an undecodable job record to the dead letters, raw, with its decode error."""
    raw = tr.get(keys.job(job_id))
    tr.clear(keys.job(job_id))
    tr.clear(index_key)
    counters.move(tr, keys, state, JobState.DEAD)
    tr.set(
        DEAD_LETTERS.pack((keys.queue, job_id)),
        pack_value({"raw": raw, "e": f"corrupt job record: {error}", "at": now}),
    )
    tr.set(JOB_DIRECTORY.pack((job_id,)), tombstone(keys.queue, "dead", now, None))


def repair_entry(
    tr: Transaction,
    keys: QueueKeys,
    job: Job | None,
    key: bytes,
    state: JobState,
    tally: Tally | None = None,
) -> None:
    """Settle an index entry ``key`` that disagrees with its job record, losing no job.

    The record exists but belongs elsewhere: the stray entry is cleared and the entry
    the record should have is written (its count already follows the record). The
    record is missing: the entry is cleared and one job leaves the count of ``state``,
    the state the entry's index implies.
    """
    tr.clear(key)
    if job is None:
        log.warning("index entry without a job record %s: cleared", describe(key))
        if tally is None:
            counters.move(tr, keys, state, None)
        else:
            tally.move(keys, state, None)
        return
    log.warning("index entry %s disagrees with its job record: re-indexed", describe(key))
    tr.set(job.index_key(keys), b"")


def drop_entry(tr: Transaction, key: bytes) -> None:
    """Clear an index entry that does not unpack (it names no job to lose)."""
    log.warning("index entry that does not unpack %s: cleared", describe(key))
    tr.clear(key)


#: The most bytes of error text stored with a job or dead letter: a handler's error
#: can be any size, and a record must stay under the value limit.
MAX_ERROR_BYTES = 2_000

#: Bytes a job record keeps free under the value limit when it is enqueued, for what a
#: claim, a failure and a dead letter add to it later (msgpack sizes, worst case):
#:
#: ======================================================================  =======
#: lease owner: a name of up to MAX_NAME_BYTES (256), str16 header (3)        259
#: lease token: 32 hex digits, str8 header (2)                                 34
#: attempt and visibility time: each from 1 byte to a uint64 (9)               16
#: state name: ``"ready"`` to ``"scheduled"``                                   4
#: last error: MAX_ERROR_BYTES (2,000), str16 header (3)                    2,003
#: the dead letter around the record: the error again (2,003), format
#: byte and map header (2), keys ``job``/``error``/``at`` (13), bin32
#: header (5), the time (9)                                                 2,032
#: total                                                                    4,348
#: ======================================================================  =======
#:
#: Rounded up to 5,000, so a field added later still fits.
JOB_RECORD_HEADROOM = 5_000

#: The largest job record ``enqueue`` accepts: 95,000 bytes.
MAX_JOB_RECORD_BYTES = VALUE_LIMIT - JOB_RECORD_HEADROOM


def truncate_error(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_BYTES` of UTF-8, marked when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_ERROR_BYTES:
        return text
    kept = data[: MAX_ERROR_BYTES - 40].decode("utf-8", "ignore")
    return f"{kept}... [{len(data) - len(kept.encode())} more bytes cut]"
