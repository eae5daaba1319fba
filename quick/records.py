"""The one writer of job records: each record with its index entries, counters,
tombstone and queue pointer.

Every change of a job's state goes through here, so a record, its one index entry
(ready or scheduled, see :mod:`quick.jobs`), its queue's counters and its queue's
pointer always move together: :class:`NewJobs` writes new jobs (enqueue, migration),
:func:`apply` writes a settlement :class:`~quick.settlement.Action` (finish, put back,
bury, renew) decided by the table of :mod:`quick.settlement`, and :func:`bury_corrupt`
quarantines a record that does not decode. Counter moves go to a
:class:`~quick.counters.Tally` when the caller batches them, else straight to the
transaction.
"""

from __future__ import annotations

import functools
import logging
import struct

from keyspace.codec import pack_value
from keyspace.layout import (
    CANCELS,
    DEAD_LETTERS,
    FINISHED,
    JOB_DIRECTORY,
    RESULTS,
    QueueKeys,
    describe,
    queue_keys,
)
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Transaction
from quick import counters, key_limits, pointers, throughput
from quick.counters import Tally
from quick.jobs import Job, JobState
from quick.progress import Progress
from quick.settlement import Act, Action

__all__ = [
    "MAX_ERROR_BYTES",
    "JOB_RECORD_HEADROOM",
    "MAX_JOB_RECORD_BYTES",
    "load_job",
    "NewJobs",
    "apply",
    "store_job",
    "finish_job",
    "request_cancel",
    "bury_job",
    "bury_corrupt",
    "repair_entry",
    "drop_entry",
    "tombstone",
    "truncate_error",
]


log = logging.getLogger("quick.store")

_ONE = struct.pack("<q", 1)


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
    old_index: bytes | None = None,
) -> int:
    """Write ``new`` (``value`` if already encoded), moving its index entry and count
    from ``old``'s (``old_index``: that entry's key, when the caller has it); return the
    record's size in bytes."""
    new_index = new.index_key(keys)
    if old is None:
        tr.set(new_index, b"")
    else:
        if old_index is None:
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
        if new.limit_keys:
            key_limits.moved(tr, new, old_state, new.state, tally)
    return len(value)


@functools.lru_cache(maxsize=4096)
def _pending_entry(queue: str) -> bytes:
    """The job directory record of a new job of ``queue`` (the same bytes for each)."""
    return pack_value({"q": queue})


class NewJobs:
    """New jobs written in one transaction body (enqueue, migration): each record, index
    entry, unique-key reservation and directory entry as it is added, then one count
    per queue and state and one pointer check per queue at :meth:`flush`.

    The caller has checked that each id and unique key is free. Make one per run of
    the body, as a :class:`~quick.counters.Tally`.
    """

    __slots__ = ("_counts", "_earliest")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, JobState], int] = {}
        self._earliest: dict[str, int] = {}

    def add(self, tr: Transaction, job: Job, value: bytes) -> None:
        """Write ``job`` (``value``: its encoded record)."""
        keys = queue_keys(job.queue)
        if job.unique_key is not None:
            tr.set(keys.unique(job.unique_key), job.id.encode())
        tr.set(keys.job(job.id), value)
        tr.set(job.index_key(keys), b"")
        tr.set(JOB_DIRECTORY.pack((job.id,)), _pending_entry(job.queue))
        counts, earliest = self._counts, self._earliest
        counts[job.queue, job.state] = counts.get((job.queue, job.state), 0) + 1
        earliest[job.queue] = min(job.vis_ms, earliest.get(job.queue, job.vis_ms))

    def flush(self, tr: Transaction) -> None:
        """Count the jobs added and make each queue's pointer cover its earliest one."""
        for (queue, state), count in self._counts.items():
            counters.bump(tr, queue_keys(queue), state, count)
        for queue, vis_ms in self._earliest.items():
            pointers.ensure_visible(tr, queue, vis_ms)
        self._counts.clear()
        self._earliest.clear()


def apply(
    tr: Transaction,
    keys: QueueKeys,
    job: Job,
    action: Action,
    now: int,
    vis_ms: int = 0,
    error: str | None = None,
    tally: Tally | None = None,
    result: bytes | None = None,
    progress: Progress | None = None,
) -> Job:
    """Write ``action`` (one that changes the store) to held ``job``; return the job as
    stored after it (a finished or buried job as it was last).

    ``vis_ms`` is when a job put back becomes visible, or a renewed lease's expiry;
    ``error`` is the attempt's error (or discard reason), cut to :data:`MAX_ERROR_BYTES`;
    ``result`` the encoded result record of a success (:func:`quick.results.encode_result`);
    ``progress`` the handler's latest, carried by a renewal (None: unchanged).
    """
    act = action.act
    if act is Act.FINISH:
        if action.records_error:
            job = job.evolve(last_error=truncate_error(error or "") or None)
        assert action.state is not None
        finish_job(tr, keys, job, action.state, now, tally, result=result)
        return job
    if act is Act.BURY:
        bury_job(tr, keys, job, truncate_error(error or ""), now, tally)
        return job
    if act is Act.PUT_BACK:
        assert action.state is not None
        back = job.evolve(
            state=action.state,
            vis_ms=vis_ms,
            owner=None,
            attempt=job.attempt - 1 if action.refund else job.attempt,
            last_error=truncate_error(error or "") if action.records_error else job.last_error,
            progress=None,  # the next attempt starts from nothing
        )
        store_job(tr, keys, job, back, tally)
        pointers.ensure_visible(tr, job.queue, vis_ms)
        return back
    if act is Act.RENEW:
        renewed = job.evolve(
            state=JobState.LEASED,
            vis_ms=vis_ms,
            progress=job.progress if progress is None else progress,
        )
        store_job(tr, keys, job, renewed, tally)
        if renewed.vis_ms < job.vis_ms:
            pointers.ensure_visible(tr, job.queue, renewed.vis_ms)
        return renewed
    raise ValueError(f"{act} writes nothing")


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
    *,
    result: bytes | None = None,
) -> None:
    """Remove ``job`` and leave its tombstone in the job directory (purged later), with
    its result record: ``result`` for a completed job, the reason of a discarded one."""
    _remove(tr, keys, job)
    if tally is None:
        counters.move(tr, keys, job.state, None)
    else:
        tally.move(keys, job.state, None)
    if job.limit_keys:
        key_limits.moved(tr, job, job.state, None, tally)
    tr.set(JOB_DIRECTORY.pack((job.id,)), tombstone(job.queue, outcome.value, now, job.token))
    tr.set(FINISHED.pack((now, job.id)), b"")
    if outcome is JobState.COMPLETED and result is not None:
        tr.set(RESULTS.pack((job.id,)), result)
    elif outcome is JobState.DISCARDED and job.last_error:
        tr.set(RESULTS.pack((job.id,)), pack_value({"e": job.last_error}))
    throughput.count_finished(tr, job.queue, now, tally)


def request_cancel(tr: Transaction, keys: QueueKeys, job: Job) -> None:
    """Put the cancel mark on leased ``job``: its holder finishes it as cancelled. The
    cancel counter, which every consumer's lease keeper watches, is bumped (an atomic
    add: concurrent cancels do not conflict), so the holder looks at once."""
    if not job.cancel_requested:
        store_job(tr, keys, job, job.evolve(cancel_requested=True))
        tr.add(CANCELS, _ONE)


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
    if job.limit_keys:
        key_limits.moved(tr, job, job.state, None, tally)
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
    index_key: bytes | None,
    state: JobState | None,
    error: str,
    now: int,
    *,
    record_key: bytes | None = None,
    raw: bytes | None = None,
) -> None:
    """Move an undecodable job record to the dead letters, raw, with its decode error.

    ``index_key`` is the index entry found for it (cleared, and one job counted from
    ``state`` to dead; None when the caller rebuilds index and counts); ``record_key``
    the record's key when its id does not unpack (then ``job_id`` is only a name);
    ``raw`` the record's bytes when already read.
    """
    record_key = keys.job(job_id) if record_key is None else record_key
    if raw is None:
        raw = tr.get(record_key)
    tr.clear(record_key)
    if index_key is not None:
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
#: progress ``pg``: key (3), array header (1), float64 (9), a text of up to
#: MAX_PROGRESS_TEXT (200) with its str8 header (2), the time (9); cancel
#: mark ``cx``: key (3), true (1)                                              228
#: the dead letter around the record: the error again (2,003), format
#: byte and map header (2), keys ``job``/``error``/``at`` (13), bin32
#: header (5), the time (9)                                                 2,032
#: total                                                                    4,576
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
