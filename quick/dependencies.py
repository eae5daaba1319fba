"""Dependencies between plain jobs: ``enqueue(..., depends_on=[job ids])``.

Theory of operation
-------------------
A job enqueued with dependencies that have not all completed is *held*: not on its
queue, but at ``("hold", job_id)`` with its encoded record, its queue, the number of
dependencies left (``lw``) and what a dependency's failure does (``od``). Its
directory entry says ``waiting`` (so :func:`quick.job_state` answers ``waiting`` and a
second enqueue of its id adds nothing). Each unfinished dependency gets a key
``("dep", dependency_id, job_id)`` and the flag ``dn`` on its own record (or on its
held record, when it is itself waiting).

When a flagged job finishes, :func:`quick.followers.job_finished` runs in the
settlement's own transaction: it reads the
dependency's dependents (one range read, no scan of anything else) and, for each,
counts one dependency done or, when the dependency was dead-lettered, discarded or
cancelled, discards the dependent with a reason naming it (unless it was enqueued with
``if_dependency_fails="run"``). The last dependency's settlement releases the job onto
its queue, ready at once (or at its own ``delay``/``at``, if later). A discarded
dependent's own dependents are settled the same way, in the same transaction.

Conflicts: the enqueue reads each dependency's directory entry and record
serializably and writes its flag; the settlement reads the dependents range
serializably. A dependent enqueued while its dependency settles therefore conflicts
with it, and the retried one sees the other: no dependent is lost or released early.

No cycles: a dependency must exist when the dependent is enqueued (an unknown id is
refused), and a job cannot depend on itself, so a job can only depend on jobs
enqueued before it. Dependencies may be on other queues.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import DEPENDENTS, HELD, JOB_DIRECTORY, describe, queue_keys
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries, transactional
from quick.enqueueing import _Prepared, check_not_moved, store_new
from quick.errors import InvalidArgument
from quick.followers import DEPENDENCY_MODES, decode_held, discard_unrun, said
from quick.jobs import Job, JobState, now_ms
from quick.records import load_job, store_job
from quick.validation import check_name

__all__ = [
    "DEPENDENCY_MODES",
    "MAX_DEPENDENCIES",
    "check_dependencies",
    "enqueue_after",
]

#: The most dependencies one job may have (each is a read and a write at enqueue).
MAX_DEPENDENCIES = 1000
_FAILED = {JobState.DEAD.value, JobState.DISCARDED.value, JobState.CANCELLED.value}


def check_dependencies(depends_on: Any, job_id: str, mode: Any) -> list[str]:
    """``depends_on`` as a list of distinct job ids, none of them ``job_id``.

    Raises:
        InvalidArgument: not a non-empty list of job ids, a duplicate, the job itself,
            too many, or an unknown ``if_dependency_fails``.
    """
    if mode not in DEPENDENCY_MODES:
        raise InvalidArgument("if_dependency_fails", f"must be one of {DEPENDENCY_MODES}")
    if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Iterable):
        raise InvalidArgument("depends_on", "must be a list of job ids")
    ids = [check_name("depends_on", item) or "" for item in depends_on]
    if not ids:
        raise InvalidArgument("depends_on", "must name at least one job")
    if len(ids) > MAX_DEPENDENCIES:
        raise InvalidArgument("depends_on", f"{len(ids)} jobs; the limit is {MAX_DEPENDENCIES}")
    if len(set(ids)) != len(ids):
        raise InvalidArgument("depends_on", "names a job twice")
    if job_id in ids:
        raise InvalidArgument("depends_on", f"job {job_id} cannot depend on itself")
    return ids


def enqueue_after(
    db_or_tr: Database | Transaction, prepared: _Prepared, depends_on: list[str], mode: str
) -> str:
    """Store ``prepared`` to run once every job in ``depends_on`` completed; its id."""
    return _enqueue_after(db_or_tr, prepared, depends_on, mode, Tries())


@transactional
def _enqueue_after(
    tr: Transaction, prepared: _Prepared, depends_on: list[str], mode: str, tries: Tries
) -> str:
    job = prepared.job
    first = tries.first()
    if not (first and prepared.fresh_id) and tr.get(JOB_DIRECTORY.pack((job.id,))) is not None:
        return job.id  # an earlier try committed, or a job holds the id already
    check_not_moved(tr, job.queue)
    entries = tr.get_many([JOB_DIRECTORY.pack((ident,)) for ident in depends_on])
    live, failed = [], None
    for ident, data in zip(depends_on, entries, strict=True):
        state, queue = _where(ident, data)
        if state in _FAILED:
            if mode == "discard" and failed is None:
                failed = f"dependency {ident} was {said(state)}"
        elif state != JobState.COMPLETED.value:
            _flag(tr, ident, state, queue)
            live.append(ident)
    now = now_ms()
    if failed is not None:
        discard_unrun(tr, job, failed, now)
        return job.id
    if not live:
        return store_new(tr, prepared, first_try=first)
    for ident in live:
        tr.set(DEPENDENTS.pack((ident, job.id)), b"")
    held = {"jr": prepared.value, "q": job.queue, "lw": len(live), "od": mode}
    tr.set(HELD.pack((job.id,)), pack_value(held))
    tr.set(JOB_DIRECTORY.pack((job.id,)), pack_value({"q": job.queue, "s": "waiting"}))
    return job.id


def _where(ident: str, data: bytes | None) -> tuple[str | None, str]:
    """(final state or None while it lives, queue) of dependency ``ident``."""
    if data is None:
        raise InvalidArgument("depends_on", f"unknown job {ident}")
    try:
        entry = unpack_value(data)
        queue, state = entry["q"], entry.get("s")
        if not isinstance(queue, str) or not isinstance(state, str | None):
            raise TypeError(entry)
    except (CorruptValue, TypeError, KeyError) as error:
        key = describe(JOB_DIRECTORY.pack((ident,)))
        raise InvalidArgument("depends_on", f"job {ident}'s entry does not decode ({key})") from (
            error
        )
    if state == JobState.MOVED.value:
        raise InvalidArgument("depends_on", f"job {ident} was moved to another store")
    return state, queue


def _flag(tr: Transaction, ident: str, state: str | None, queue: str) -> None:
    """Mark dependency ``ident`` (live, or itself waiting) as having dependents."""
    if state == JobState.WAITING.value:
        key = HELD.pack((ident,))
        held = decode_held(key, tr.get(key))
        if held is None:
            raise InvalidArgument("depends_on", f"job {ident} is waiting but its record is lost")
        job = Job.from_value(queue, ident, held["jr"])
        if not job.has_dependents:
            held["jr"] = job.evolve(has_dependents=True).to_value()
            tr.set(key, pack_value(held))
        return
    keys = queue_keys(queue)
    try:
        live = load_job(tr, keys, ident)
    except CorruptValue as error:
        raise InvalidArgument("depends_on", f"job {ident}'s record does not decode") from error
    if live is None:
        raise InvalidArgument("depends_on", f"unknown job {ident}")
    if not live.has_dependents:
        store_job(tr, keys, live, live.evolve(has_dependents=True))
