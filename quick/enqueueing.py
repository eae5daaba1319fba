"""Putting jobs on queues: ``enqueue`` and ``enqueue_many``.

Both join the caller's transaction when given one (QuiCK's central property: the job
commits or rolls back with the caller's own writes) and otherwise run their own.
Everything is validated and encoded before the first write, so bad input raises
(naming the field) and leaves the store untouched.

Retry semantics: job ids are made before the retry loop, and an enqueue first looks
its id up in the job directory, so a retry after ``commit_unknown_result`` returns the
same id and adds nothing, even if the job already ran (the directory keeps a tombstone
for finished jobs). A ``unique_key`` makes a second enqueue return the first job's id
while that job is pending or running.

A queue ``quick migrate`` moved away carries a ``("moved", queue)`` marker; every
store of a new job reads it (one serializable point read per queue per call, so an
enqueue racing the marker conflicts and retries) and raises :class:`QueueMoved`.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import JOB_DIRECTORY, MOVED, POINTERS, queue_keys
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, ReadView, Transaction
from keyspace.retry import Tries, transactional
from quick.errors import InvalidArgument, InvalidPayload, QueueMoved
from quick.jobs import DEFAULT_PRIORITY, Job, JobState, now_ms
from quick.key_limits import check_limit_keys
from quick.records import JOB_RECORD_HEADROOM, MAX_JOB_RECORD_BYTES, NewJobs
from quick.tracecontext import TraceContext, current_trace
from quick.validation import (
    check_max_attempts,
    check_name,
    check_priority,
    visibility_ms,
)

__all__ = [
    "enqueue",
    "enqueue_many",
    "new_job_id",
    "prepare",
    "store_new",
    "store_batch",
    "prefetch",
    "queue_reads",
    "check_not_moved",
    "decode_moved",
    "JobSpec",
]

_seq_lock = threading.Lock()
_seq = [0, 0]
#: The random tail of ids: seeded from the OS once per process (a system call per id
#: showed in enqueue profiles), and again in a forked child so siblings never share it.
_tail = random.Random(os.urandom(16))
_tail_pid = [os.getpid()]


def new_job_id() -> str:
    """A 32-hex-digit id that sorts by creation time (ms, then a per-process sequence)."""
    ms = now_ms()
    with _seq_lock:
        if _seq[0] == ms:
            _seq[1] += 1
        else:
            _seq[0], _seq[1] = ms, 0
        seq = _seq[1] & 0xFFFF
        if _tail_pid[0] != os.getpid():
            _tail.seed(os.urandom(16))
            _tail_pid[0] = os.getpid()
        bits = _tail.getrandbits(64)
    return f"{ms:012x}{seq:04x}{bits:016x}"


@dataclass(frozen=True, slots=True)
class _Prepared:
    job: Job
    value: bytes
    #: True when the id was generated here: nothing can hold it before our first try.
    fresh_id: bool = False


def prepare(
    queue_id: Any,
    topic: Any,
    payload: Any,
    *,
    priority: Any = DEFAULT_PRIORITY,
    delay: Any = None,
    at: Any = None,
    max_attempts: Any = None,
    job_id: Any = None,
    unique_key: Any = None,
    now: int | None = None,
    extension: dict[str, Any] | None = None,
    limit_keys: Any = None,
    trace: TraceContext | None = None,
    batch: str | None = None,
) -> _Prepared:
    """Validate and encode one job; raises before anything is written.

    ``extension`` is data for a job extension (:mod:`quick.extensions`); layers above
    the queue, such as workflows, pass it here rather than through ``enqueue``.
    ``trace`` is the trace context to record (a workflow run's); by default the active
    span's, if the process uses OpenTelemetry (:mod:`quick.tracecontext`).
    ``batch`` is the id of the batch the job joins (:mod:`quick.batches`).
    """
    queue = check_name("queue_id", queue_id)
    name = check_name("topic", topic)
    assert queue is not None
    assert name is not None
    ident = check_name("job_id", job_id, optional=True) or new_job_id()
    unique = check_name("unique_key", unique_key, optional=True)
    current = now_ms() if now is None else now
    vis = visibility_ms(delay, at, current)
    job = Job(
        id=ident,
        queue=queue,
        topic=name,
        payload=payload,
        priority=check_priority(priority),
        vis_ms=vis,
        state=JobState.READY if vis <= current else JobState.SCHEDULED,
        max_attempts=check_max_attempts(max_attempts),
        created_ms=current,
        unique_key=unique,
        extension=extension,
        limit_keys=check_limit_keys(limit_keys),
        trace=current_trace() if trace is None else trace,
        batch=batch,
    )
    try:
        value = job.to_value()
    except TypeError as error:
        raise InvalidPayload(str(error)) from None
    if len(value) > MAX_JOB_RECORD_BYTES:
        raise InvalidArgument(
            "payload",
            f"encodes to a {len(value)}-byte job record; the limit is {MAX_JOB_RECORD_BYTES} "
            f"bytes (the {VALUE_LIMIT}-byte value limit less {JOB_RECORD_HEADROOM} kept for "
            "what a claim and a dead letter add)",
        )
    return _Prepared(job, value, fresh_id=job_id is None)


def _taken(tr: Transaction, prepared: _Prepared, first_try: bool) -> str | None:
    """None when a job's id and unique key are free; else the id to answer with (its
    own, already stored, or the id of the job holding its unique key)."""
    job = prepared.job
    if not (first_try and prepared.fresh_id) and tr.get(JOB_DIRECTORY.pack((job.id,))) is not None:
        return job.id
    if job.unique_key is not None:
        holder = tr.get(queue_keys(job.queue).unique(job.unique_key))
        if holder is not None:
            return holder.decode()
    return None


def check_not_moved(view: ReadView, queue: str) -> None:
    """Raise :class:`QueueMoved` when ``quick migrate`` moved ``queue`` to another store.

    One point read; through a transaction it is serializable, so a marker committed
    after the read makes the caller's transaction conflict and retry.
    """
    data = view.get(MOVED.pack((queue,)))
    if data is not None:
        try:
            target = decode_moved(data)
        except (ValueError, TypeError):  # a corrupt marker still marks the queue moved
            target = "another store"
        raise QueueMoved(queue, target)


def decode_moved(data: bytes) -> str:
    """The URL of the store a ``("moved", queue)`` marker stored as ``data`` names.

    Raises:
        CorruptValue: ``data`` is not a marker: a map of a URL (``url``) and a time (``at``).
    """
    record = unpack_value(data)
    url = record.get("url") if isinstance(record, dict) else None
    at = record.get("at") if isinstance(record, dict) else None
    if not isinstance(url, str) or not url or type(at) is not int:
        raise CorruptValue(f"moved marker of the wrong shape: {record!r}")
    return url


def store_new(tr: Transaction, prepared: _Prepared, *, first_try: bool = False) -> str:
    """Write a prepared job unless its id or unique key is already taken; return the job id.

    ``first_try`` may skip the directory lookup for a freshly generated id: it only
    matters when an earlier try of the same transaction may have committed.

    Raises:
        QueueMoved: the job's queue was moved to another store.
    """
    check_not_moved(tr, prepared.job.queue)
    holder = _taken(tr, prepared, first_try)
    if holder is not None:
        return holder
    new = NewJobs()
    new.add(tr, prepared.job, prepared.value)
    new.flush(tr)
    return prepared.job.id


def queue_reads(queue: str) -> list[bytes]:
    """The keys :func:`store_new` reads once per queue, whatever the job: the queue's
    moved marker and its pointer (for a caller's own one-round-trip prefetch)."""
    return [MOVED.pack((queue,)), POINTERS.pack((queue,))]


def prefetch(tr: Transaction, batch: Iterable[_Prepared], *, first_try: bool = False) -> None:
    """Read, in one round trip and adding no conflicts, every key :func:`store_new` and
    :func:`store_batch` will read for ``batch``, so their own (serializable) reads are
    answered by the transaction rather than one round trip each.

    Both engines keep what a transaction has read (FoundationDB's read-your-writes
    cache, the embedded engine's read cache); a later serializable read of the same key
    adds its read conflict as before, so conflicts are unchanged.
    """
    keys: dict[bytes, None] = {}
    queues: set[str] = set()
    for prepared in batch:
        job = prepared.job
        if job.queue not in queues:  # a batch is mostly one queue: its keys once
            queues.add(job.queue)
            keys.update(dict.fromkeys(queue_reads(job.queue)))
        if not (first_try and prepared.fresh_id):
            keys[JOB_DIRECTORY.pack((job.id,))] = None
        if job.unique_key is not None:
            keys[queue_keys(job.queue).unique(job.unique_key)] = None
    if keys:
        tr.get_many(list(keys), snapshot=True)


def store_batch(tr: Transaction, batch: list[_Prepared], *, first_try: bool = False) -> list[str]:
    """``store_new`` for many jobs, with one pointer check, one moved check and one count
    per queue and state; every key they read is fetched in one round trip first."""
    prefetch(tr, batch, first_try=first_try)
    for queue in dict.fromkeys(prepared.job.queue for prepared in batch):
        check_not_moved(tr, queue)
    ids = []
    new = NewJobs()
    for prepared in batch:
        holder = _taken(tr, prepared, first_try)
        if holder is None:
            new.add(tr, prepared.job, prepared.value)
        ids.append(prepared.job.id if holder is None else holder)
    new.flush(tr)
    return ids


def enqueue(
    db_or_tr: Database | Transaction,
    queue_id: str,
    topic: str,
    payload: Any,
    *,
    priority: int = DEFAULT_PRIORITY,
    delay: Any = None,
    at: Any = None,
    max_attempts: int | None = None,
    job_id: str | None = None,
    unique_key: str | None = None,
    limit_keys: list[str] | tuple[str, ...] | None = None,
) -> str:
    """Put one job on ``queue_id``; return its id.

    Args:
        db_or_tr: a database (commits on its own) or the caller's transaction (joins it).
        queue_id: the queue (tenant) the job belongs to.
        topic: routes the job to its handler.
        payload: any msgpack-encodable value.
        priority: lower numbers run first.
        delay: seconds or a timedelta until the job becomes visible.
        at: an aware datetime when the job becomes visible (instead of delay).
        max_attempts: attempts before the job is dead-lettered (default: the handler's, else 5).
        job_id: a caller-chosen id; enqueueing the same id again adds nothing.
        unique_key: while a job with this key is pending or running, enqueue returns its id.
        limit_keys: names of keyed limits (:func:`quick.set_key_limits`) the job counts
            against: it waits, using no attempt, while any of them is exhausted.

    Raises:
        InvalidArgument: a bad queue id, topic, priority, delay, at, max_attempts, limit
            keys or size.
        InvalidPayload: a payload msgpack cannot encode.
        QueueMoved: ``quick migrate`` moved the queue to another store (named on the error).
    """
    prepared = prepare(
        queue_id,
        topic,
        payload,
        priority=priority,
        delay=delay,
        at=at,
        max_attempts=max_attempts,
        job_id=job_id,
        unique_key=unique_key,
        limit_keys=limit_keys,
    )
    return _store_one(db_or_tr, prepared, Tries())


@transactional
def _store_one(tr: Transaction, prepared: _Prepared, tries: Tries) -> str:
    return store_new(tr, prepared, first_try=tries.first())


JobSpec = Mapping[str, Any]


def enqueue_many(db_or_tr: Database | Transaction, jobs: Iterable[JobSpec]) -> list[str]:
    """Enqueue several jobs in one transaction; each is a mapping of ``enqueue``'s arguments.

    Every job is validated before any is written; the ids come back in order.

    Raises:
        QueueMoved: one of the queues was moved to another store; nothing is written.
    """
    prepared = []
    for index, spec in enumerate(jobs):
        args = dict(spec)
        try:
            queue_id, topic = args.pop("queue_id"), args.pop("topic")
        except KeyError as missing:
            raise InvalidArgument(f"jobs[{index}]", f"needs {missing.args[0]}") from None
        payload = args.pop("payload", None)
        unknown = set(args) - {
            "priority",
            "delay",
            "at",
            "max_attempts",
            "job_id",
            "unique_key",
            "limit_keys",
        }
        if unknown:
            raise InvalidArgument(f"jobs[{index}]", f"unknown field(s) {sorted(unknown)}")
        prepared.append(prepare(queue_id, topic, payload, **args))
    return _store_many(db_or_tr, prepared, Tries())


@transactional
def _store_many(tr: Transaction, prepared: list[_Prepared], tries: Tries) -> list[str]:
    return store_batch(tr, prepared, first_try=tries.first())


def directory_entry(view: Any, job_id: str) -> dict[str, Any] | None:
    """The job directory record for ``job_id`` (queue, and outcome once finished)."""
    data = view.get(JOB_DIRECTORY.pack((job_id,)))
    return None if data is None else dict(unpack_value(data))
