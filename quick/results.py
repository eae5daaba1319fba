"""Job results: what a handler returned, stored with the finished job, and waiting for it.

Theory of operation
-------------------
A job that completes with a result other than None gets a result record at
``("res", job_id)`` (see :mod:`keyspace.layout`), written by the one writer
(:func:`quick.records.finish_job`) in the transaction that leaves the job's tombstone in
the job directory. A discarded job's record holds its reason instead. A None result
writes nothing, so a job without a result costs what it did before. The record is
cleared with the tombstone (:func:`quick.operations.purge_finished`, the consumer's
``--keep-finished``), so a result lives exactly as long as the tombstone does, and moves
with it (``quick migrate``). The record is a key of its own, not a field of the tombstone,
because fencing, purging and migration read tombstones by the page: up to 100 kB of
result in each would make those reads (and a purge's 1,000-row transaction) heavy. A batch
of large results settles in several commits (:data:`quick.outcomes.RESULT_BYTES_PER_COMMIT`)
so none nears the 10 MB transaction limit.

:func:`result` reads the tombstone and the result record in one round trip. While the
job is not finished it watches the job's directory entry, which every way a job ends
rewrites (completed, discarded, cancelled, dead-lettered, moved), and looks again when
the watch fires: no polling. A job unknown to the store and one whose tombstone was
purged look the same (nothing is kept of a purged job); both raise
:class:`~quick.errors.JobNotFound`, saying so.

Nothing read is trusted: a result record that does not decode is named by its key in
the ``quick.store`` log and raised to the reader as :class:`~quick.errors.CorruptResult`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Final

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.errors import QuickError
from keyspace.layout import DEAD_LETTERS, JOB_DIRECTORY, MOVED, RESULTS, describe
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, Transaction, Watch
from keyspace.retry import watch_retry_pause
from quick.errors import (
    CorruptResult,
    InvalidArgument,
    InvalidPayload,
    JobCancelled,
    JobDeadLettered,
    JobDiscarded,
    JobNotFound,
    QueueMoved,
    ResultTimeout,
)
from quick.jobs import JobState
from quick.validation import check_name

__all__ = [
    "MAX_RESULT_BYTES",
    "PENDING",
    "encode_result",
    "decode_result",
    "check_timeout",
    "look",
    "look_many",
    "look_or_watch",
    "result",
]

log = logging.getLogger("quick.store")

#: The largest stored result record: one value of the store.
MAX_RESULT_BYTES = VALUE_LIMIT

#: The longest timeout :func:`result` accepts: about 100 years, in seconds.
MAX_TIMEOUT = 100 * 365 * 86_400


class _Pending:
    """The type of :data:`PENDING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


#: What :func:`look` answers for a job that has not finished yet.
PENDING: Final = _Pending()

UNKNOWN = "never enqueued in this store, or finished and purged after its retention"


def encode_result(value: Any) -> bytes | None:
    """The result record for a handler's return ``value``; None (nothing stored) for None.

    Raises:
        InvalidPayload: msgpack cannot encode the value (``field`` is ``"result"``).
        InvalidArgument: it encodes to more than :data:`MAX_RESULT_BYTES`.
    """
    if value is None:
        return None
    try:
        data = pack_value({"rv": value})
    except TypeError as error:
        raise InvalidPayload(str(error), field="result") from None
    if len(data) > MAX_RESULT_BYTES:
        raise InvalidArgument(
            "result", f"encodes to {len(data)} bytes; the limit is {MAX_RESULT_BYTES}"
        )
    return data


def check_timeout(timeout: Any) -> float | None:
    """None (wait as long as it takes) or a finite number of seconds, at least 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgument("timeout", f"must be seconds or None, not {type(timeout).__name__}")
    # Compared before float(): an int too large for a float must not raise OverflowError.
    if not 0 <= timeout <= MAX_TIMEOUT:  # NaN fails both comparisons, infinity the second
        raise InvalidArgument(
            "timeout",
            f"must be a finite number of seconds from 0 to {MAX_TIMEOUT}, not {timeout!r:.40}",
        )
    return float(timeout)


def _corrupt(job_id: str, key: bytes, problem: str) -> CorruptResult:
    where = describe(key)
    log.warning("%s: %s; the reader of the result is told", where, problem)
    return CorruptResult(job_id, where, problem)


def decode_result(data: bytes) -> dict[str, Any]:
    """A stored result record (``rv`` and/or ``e``); CorruptValue when it is not one."""
    record = unpack_value(data)
    if not isinstance(record, dict) or not set(record) <= {"rv", "e"}:
        raise CorruptValue(f"not a result record: {record!r:.200}")
    if not isinstance(record.get("e", ""), str):
        raise CorruptValue(f"a result record's reason is not text: {record['e']!r:.200}")
    return record


def _record(job_id: str, data: bytes | None) -> dict[str, Any]:
    """The result record at ``("res", job_id)`` ({} when there is none)."""
    if data is None:
        return {}
    try:
        return decode_result(data)
    except CorruptValue as error:
        raise _corrupt(job_id, RESULTS.pack((job_id,)), str(error)) from None


def _dead_error(tr: Transaction, queue: str, job_id: str) -> str:
    from quick.inspection import decode_dead_letter  # inspection imports the writers

    data = tr.get(DEAD_LETTERS.pack((queue, job_id)))
    if data is None:
        return ""
    try:
        return decode_dead_letter(queue, job_id, data).error
    except CorruptValue as error:
        return f"(its dead letter is corrupt: {error})"


def look(tr: Transaction, job_id: str) -> Any:
    """The result of job ``job_id`` if it completed, :data:`PENDING` if it has not finished.

    Raises:
        JobNotFound: no such job (never enqueued, or purged).
        JobDeadLettered / JobDiscarded / JobCancelled: it finished without a result.
        QueueMoved: its queue moved to another store (``quick migrate``); ask there.
        CorruptResult: its tombstone or result record does not decode (named by key).
    """
    entry, record = tr.get_many([JOB_DIRECTORY.pack((job_id,)), RESULTS.pack((job_id,))])
    return _verdict(tr, job_id, entry, record)


def look_many(tr: Transaction, job_ids: Sequence[str]) -> list[Any]:
    """:func:`look` for many jobs in one round trip (and one per dead-lettered job):
    per job, its result, :data:`PENDING`, or the error :func:`look` would raise, returned
    (a :class:`~keyspace.QuickError`), so one job's fate does not hide the others'."""
    keys = [
        k for job_id in job_ids for k in (JOB_DIRECTORY.pack((job_id,)), RESULTS.pack((job_id,)))
    ]
    found = tr.get_many(keys)
    out: list[Any] = []
    for i, job_id in enumerate(job_ids):
        try:
            out.append(_verdict(tr, job_id, found[2 * i], found[2 * i + 1]))
        except QuickError as error:
            out.append(error)
    return out


def _verdict(tr: Transaction, job_id: str, entry_data: bytes | None, record: bytes | None) -> Any:
    """:func:`look`'s answer, given the job's directory entry and result record."""
    entry_key = JOB_DIRECTORY.pack((job_id,))
    if entry_data is None:
        raise JobNotFound(job_id, UNKNOWN)
    try:
        entry = unpack_value(entry_data)
    except CorruptValue as error:
        raise _corrupt(job_id, entry_key, str(error)) from None
    if not isinstance(entry, dict) or not isinstance(entry.get("q"), str):
        raise _corrupt(job_id, entry_key, f"not a job directory entry: {entry!r:.200}")
    state = entry.get("s")
    if state is None:
        return PENDING
    if state == JobState.COMPLETED.value:
        return _record(job_id, record).get("rv")
    queue = entry["q"]
    if state == JobState.DEAD.value:
        raise JobDeadLettered(job_id, _dead_error(tr, queue, job_id))
    if state == JobState.DISCARDED.value:
        raise JobDiscarded(job_id, _record(job_id, record).get("e", ""))
    if state == JobState.CANCELLED.value:
        raise JobCancelled(job_id)
    if state == JobState.MOVED.value:
        moved = tr.get(MOVED.pack((queue,)))
        url = "another store"
        if moved is not None:
            with contextlib.suppress(CorruptValue, AttributeError):
                url = str(unpack_value(moved).get("url", url))
        raise QueueMoved(queue, url)
    raise _corrupt(job_id, entry_key, f"unknown final state {state!r}")


def look_or_watch(tr: Transaction, job_id: str, watch: bool) -> tuple[Any, Watch | None]:
    """:func:`look`, and when the job is pending and ``watch`` is set, a watch on its
    directory entry (it fires when the job finishes; commit ``tr`` for it to count)."""
    found = look(tr, job_id)
    if found is PENDING and watch:
        return found, tr.watch(JOB_DIRECTORY.pack((job_id,)))
    return found, None


def result(db: Database, job_id: str, timeout: float | None = None) -> Any:
    """What job ``job_id``'s handler returned, waiting (without polling) until it finishes.

    Args:
        db: the store the job was enqueued in.
        job_id: the id ``enqueue`` returned (or gave it); a job enqueued inside a
            transaction is found once that transaction committed.
        timeout: seconds to wait at most; None waits as long as it takes, 0 only looks.

    Returns:
        The handler's return value, as msgpack gives it back (tuples come back as
        lists); None for a handler that returned None.

    Raises:
        InvalidArgument: ``job_id`` or ``timeout`` is malformed (nothing is read).
        ResultTimeout: the job did not finish in time (a ``TimeoutError`` too).
        JobNotFound: no such job: never enqueued here, or finished and purged after
            ``--keep-finished`` (the two cannot be told apart).
        JobDeadLettered: it was dead-lettered; ``error`` is its last error.
        JobDiscarded: it was discarded; ``reason`` says why.
        JobCancelled: it was cancelled.
        QueueMoved: its queue moved to another store; ask that store.
        CorruptResult: the stored result does not decode (named by its key).
    """
    check_name("job_id", job_id)
    wait = check_timeout(timeout)
    deadline = None if wait is None else time.monotonic() + wait
    failures = 0
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        found, watch = db.transact(look_or_watch, job_id, remaining is None or remaining > 0)
        if watch is None:
            if found is PENDING:
                raise ResultTimeout(job_id, wait or 0.0)
            return found
        try:
            watch.wait(remaining)
        finally:
            watch.cancel()
        failures = failures + 1 if watch.failed else 0
        pause = watch_retry_pause(failures, random.random(), remaining)
        if pause:
            time.sleep(pause)
