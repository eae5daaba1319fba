"""What a finished job tells the jobs that follow it: its batch, and its dependents.

The settlement side of :mod:`quick.batches` and :mod:`quick.dependencies`. The places
that finish a job (:func:`quick.leases.apply` after the writer, ``quick.cancel``, a
claim that dead-letters a job) call :func:`job_finished`, in their own transaction,
only for a job whose record carries a batch id (``b``) or the dependents flag
(``dn``): a plain job pays nothing more. This module writes new jobs (callbacks,
released dependents) through :class:`quick.records.NewJobs` and never imports the
enqueue layer, so the layers stay one-way.

Batch: the member's final state is counted (atomic add), and the batch's ``left``
counter is read serializably and written less one; the transaction that brings it to
zero enqueues the callbacks (see :mod:`quick.batches` for why exactly one does).

Dependents: each job waiting on the finished one (one range read) counts one
dependency done, is released onto its queue when it was the last, or is discarded
(with its own dependents, in turn) when the dependency failed.
"""

from __future__ import annotations

import logging
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import (
    BATCH_COUNTS,
    BATCH_MEMBERS,
    BATCHES,
    DEPENDENTS,
    FINISHED,
    HELD,
    JOB_DIRECTORY,
    RESULTS,
    describe,
)
from keyspace.protocol import ReadView, Transaction
from quick.counters import decode_count, encode_count
from quick.errors import BatchNotFound, InvalidArgument
from quick.jobs import Job, JobState
from quick.records import NewJobs, tombstone

__all__ = [
    "FINAL_STATES",
    "BATCH_COUNTERS",
    "DEPENDENCY_MODES",
    "job_finished",
    "load_batch",
    "batch_counts",
    "give_back_open_slot",
    "decode_held",
    "discard_unrun",
    "cancel_held",
]

log = logging.getLogger("quick.store")

#: The states a batch member settles in, each counted.
FINAL_STATES = (
    JobState.COMPLETED.value,
    JobState.DISCARDED.value,
    JobState.DEAD.value,
    JobState.CANCELLED.value,
)
#: A batch's counters: members, members left (plus one while open), and each final state.
BATCH_COUNTERS = ("total", "left", *FINAL_STATES)
#: What a dependency's failure (dead-lettered, discarded, cancelled) does to the job
#: waiting for it: discard it, with a reason naming the dependency; or count the
#: dependency as done and run it anyway.
DEPENDENCY_MODES = ("discard", "run")
_FAILED = {JobState.DEAD.value, JobState.DISCARDED.value, JobState.CANCELLED.value}
_ONE = encode_count(1)


def job_finished(tr: Transaction, job: Job, state: JobState, now: int) -> None:
    """Count ``job`` in its batch and settle its dependents, in ``tr``. A job moved to
    another store by ``quick migrate`` finishes there, so it tells nobody here."""
    if state is JobState.MOVED:
        return
    if job.batch is not None:
        _member_finished(tr, job.batch, job.id, state.value, now)
    if job.has_dependents:
        _dependency_finished(tr, job.id, state.value, now)


# -- batches ----------------------------------------------------------------------------


def count(view: ReadView, key: bytes) -> int:
    """A batch counter's value (0 when absent; a corrupt one is logged by its key)."""
    data = view.get(key)
    if data is None:
        return 0
    try:
        return decode_count(data)
    except Exception:
        log.warning("batch counter that does not decode %s: read as 0", describe(key))
        return 0


def batch_counts(view: ReadView, batch_id: str) -> dict[str, int]:
    """A batch's counters by name (:data:`BATCH_COUNTERS`)."""
    return {name: count(view, BATCH_COUNTS.pack((batch_id, name))) for name in BATCH_COUNTERS}


def load_batch(view: ReadView, batch_id: str) -> dict[str, Any]:
    """The batch record.

    Raises:
        BatchNotFound: there is no such batch.
        CorruptValue: the stored value is not a batch record (named by its key).
    """
    key = BATCHES.pack((batch_id,))
    data = view.get(key)
    if data is None:
        raise BatchNotFound(batch_id)
    record = unpack_value(data)
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("q"), str)
        or not isinstance(record.get("op"), bool)
        or not isinstance(record.get("cb"), dict)
    ):
        raise CorruptValue(f"batch record of the wrong shape: {describe(key)}")
    return record


def _member_finished(tr: Transaction, batch_id: str, job_id: str, state: str, now: int) -> None:
    tr.set(BATCH_MEMBERS.pack((batch_id, job_id)), pack_value({"s": state}))
    tr.add(BATCH_COUNTS.pack((batch_id, state)), _ONE)
    _one_fewer(tr, batch_id, None, now)


def give_back_open_slot(tr: Transaction, batch_id: str, record: dict[str, Any], now: int) -> None:
    """A batch was closed (``record`` as now stored): its open slot is given back, and
    the callbacks fire here if every member has settled already."""
    _one_fewer(tr, batch_id, record, now)


def _one_fewer(tr: Transaction, batch_id: str, record: dict[str, Any] | None, now: int) -> None:
    """One fewer left; enqueue the callbacks when none is. The serializable read of
    ``left`` is what makes exactly one transaction see zero."""
    key = BATCH_COUNTS.pack((batch_id, "left"))
    left = count(tr, key) - 1
    tr.set(key, encode_count(left))
    if left != 0:
        return
    if record is None:
        try:
            record = load_batch(tr, batch_id)
        except (CorruptValue, InvalidArgument) as error:
            log.warning("batch %s cannot fire its callbacks: %s", batch_id, error)
            return
    counts = batch_counts(tr, batch_id)
    counts["pending"] = 0
    del counts["left"]
    failed = sum(counts[state] for state in _FAILED)
    envelope = {"batch_id": batch_id, "counts": counts}
    for kind, callback in record["cb"].items():
        if kind == "complete" or (kind == "success") == (failed == 0):
            _enqueue_callback(tr, batch_id, kind, callback, envelope, now)


def callback_job(callback: dict[str, Any], envelope: dict[str, Any], now: int) -> Job:
    """The job a stored callback record becomes, its payload wrapped in ``envelope``."""
    return Job(
        id=callback["ji"],
        queue=callback["q"],
        topic=callback["t"],
        payload={**envelope, "payload": callback["p"]},
        priority=callback["pr"],
        vis_ms=now,
        state=JobState.READY,
        max_attempts=callback["m"],
        created_ms=now,
    )


def _enqueue_callback(
    tr: Transaction,
    batch_id: str,
    kind: str,
    callback: Any,
    envelope: dict[str, Any],
    now: int,
) -> None:
    """Enqueue one callback, unless its id is taken (a retry that fired it already)."""
    try:
        job = callback_job(callback, envelope, now)
        value = job.to_value()
    except (TypeError, KeyError, ValueError) as error:
        log.warning("batch %s: callback %s does not decode: %r", batch_id, kind, error)
        return
    if tr.get(JOB_DIRECTORY.pack((job.id,))) is not None:
        return
    new = NewJobs()
    new.add(tr, job, value)
    new.flush(tr)


# -- dependencies -----------------------------------------------------------------------


def decode_held(key: bytes, data: bytes | None) -> dict[str, Any] | None:
    """A held job's record (None when absent; a corrupt one is logged by its key and
    left where it is)."""
    if data is None:
        return None
    try:
        held = unpack_value(data)
        if (
            isinstance(held, dict)
            and isinstance(held.get("jr"), bytes)
            and isinstance(held.get("q"), str)
            and type(held.get("lw")) is int
            and held.get("od") in DEPENDENCY_MODES
        ):
            return held
    except CorruptValue:
        pass
    log.warning("held job record that does not decode %s: left as it is", describe(key))
    return None


def said(state: str) -> str:
    """A final state in words, for a discard reason."""
    return "dead-lettered" if state == JobState.DEAD.value else state


def discard_unrun(tr: Transaction, job: Job, why: str, now: int) -> None:
    """Finish a job that never reached its queue as discarded, with ``why`` as its
    reason (the result record a discarded job keeps: ``quick.result`` raises
    ``JobDiscarded`` with it)."""
    tr.set(JOB_DIRECTORY.pack((job.id,)), tombstone(job.queue, "discarded", now, None))
    tr.set(FINISHED.pack((now, job.id)), b"")
    tr.set(RESULTS.pack((job.id,)), pack_value({"e": why}))


def _dependency_finished(tr: Transaction, job_id: str, state: str, now: int) -> None:
    work = [(job_id, state)]
    while work:
        ident, final = work.pop()
        begin, end = DEPENDENTS.range((ident,))
        for key, _ in tr.get_range(begin, end):
            tr.clear(key)
            waiting = DEPENDENTS.unpack(key)[1]
            if _one_done(tr, waiting, ident, final, now):
                work.append((waiting, JobState.DISCARDED.value))


def _held(tr: Transaction, job_id: str) -> tuple[bytes, dict[str, Any], Job] | None:
    """A held job's key, record and job (None when missing or undecodable: logged)."""
    key = HELD.pack((job_id,))
    held = decode_held(key, tr.get(key))
    if held is None:
        return None
    try:
        return key, held, Job.from_value(held["q"], job_id, held["jr"])
    except CorruptValue as error:
        log.warning("held job record that does not decode %s: %s", describe(key), error)
        return None


def _one_done(tr: Transaction, waiting: str, ident: str, final: str, now: int) -> bool:
    """Count dependency ``ident`` (finished as ``final``) done for held job ``waiting``;
    True when that discarded it and jobs wait for it in turn."""
    found = _held(tr, waiting)
    if found is None:
        return False
    key, held, job = found
    if final in _FAILED and held["od"] == "discard":
        tr.clear(key)
        discard_unrun(tr, job, f"dependency {ident} was {said(final)}", now)
        return job.has_dependents
    if held["lw"] > 1:
        tr.set(key, pack_value({**held, "lw": held["lw"] - 1}))
        return False
    tr.clear(key)
    vis = max(job.vis_ms, now)
    released = job.evolve(vis_ms=vis, state=JobState.READY if vis <= now else JobState.SCHEDULED)
    new = NewJobs()
    new.add(tr, released, released.to_value())
    new.flush(tr)
    return False


def cancel_held(tr: Transaction, job_id: str, now: int) -> bool:
    """Cancel a job waiting for its dependencies (``quick.cancel``): it finishes as
    cancelled and the jobs waiting for it hear so. Its entries under its dependencies
    stay; their settlements find no held job and skip them. False when its held record
    is missing or does not decode (logged by its key)."""
    found = _held(tr, job_id)
    if found is None:
        return False
    key, _, job = found
    tr.clear(key)
    tr.set(JOB_DIRECTORY.pack((job_id,)), tombstone(job.queue, "cancelled", now, None))
    tr.set(FINISHED.pack((now, job_id)), b"")
    if job.has_dependents:
        _dependency_finished(tr, job_id, JobState.CANCELLED.value, now)
    return True
