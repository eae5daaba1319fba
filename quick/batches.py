"""Batches: jobs enqueued as one group, with callback jobs fired when the group settles.

Theory of operation
-------------------
A batch is a record ``("b", batch_id)`` (the callbacks' queue, whether it is still
open, and its callback jobs, whose ids are chosen when the batch is made) and counters
``("bn", batch_id, name)``: ``total``, ``left`` and one per final state. Each member's
job record carries the batch id (``b``), and ``("bm", batch_id, job_id)`` lists the
members (empty while pending, then the state each finished in).

``left`` counts the members not yet settled, plus one while the batch is open. The
transaction that brings it to zero enqueues the callbacks, in that same transaction:
a member's settlement (through :func:`quick.followers.job_finished`) adds one to its
final state's counter with an atomic add and *reads* ``left`` serializably before
writing it less one. Two overlapping settlements of members of one batch therefore
conflict, and the retried one sees the other's write: exactly one transaction sees
``left`` reach zero, whatever runs concurrently (``tests/unit/test_batches.py`` commits
the last two members' settlements concurrently). :func:`close_batch` gives back the
open slot the same way, so callbacks fire only once a batch is closed.

A retried firing (``commit_unknown_result``) cannot fire twice: the member's own
settlement is fenced (a retry finds its claim settled and writes nothing), and each
callback job has its id fixed at creation, so enqueueing it again adds nothing.

Cost: settlements of one batch's members serialize on its ``left`` counter
(overlapping ones retry); a job in no batch pays nothing (the hook runs only for job
records carrying ``b``).

Callbacks: ``on_success`` fires when every member completed; ``on_failure`` when the
batch is done and some member was dead-lettered, discarded or cancelled; ``on_complete``
when every member settled, whatever the outcome. A callback job's payload is
``{"batch_id": ..., "counts": {...}, "payload": <the callback's own payload>}``; the
members' states and results (job results, :mod:`quick.results`) are paged with
:func:`batch_results`: a 10,000-member batch's results cannot fit one value.

Not counted: a member whose record no longer decodes (quarantined by its key; its
batch stays unfinished), and a member moved away by ``quick migrate``. A dead member
requeued later is a plain job: the batch counted it as dead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import (
    BATCH_COUNTS,
    BATCH_MEMBERS,
    BATCHES,
    JOB_DIRECTORY,
    RESULTS,
    describe,
)
from keyspace.protocol import Database, ReadView, Transaction
from keyspace.retry import Tries, transactional
from quick.counters import encode_count
from quick.enqueueing import _Prepared, new_job_id, prepare, store_batch
from quick.errors import InvalidArgument
from quick.followers import (
    BATCH_COUNTERS,
    batch_counts,
    count,
    give_back_open_slot,
    load_batch,
)
from quick.jobs import DEFAULT_PRIORITY, now_ms
from quick.results import decode_result
from quick.validation import check_name, check_positive_ms

__all__ = [
    "BatchStatus",
    "MemberResult",
    "CALLBACK_KINDS",
    "enqueue_batch",
    "add_to_batch",
    "close_batch",
    "batch_status",
    "batch_results",
    "list_batches",
]

log = logging.getLogger("quick.store")

#: The callbacks a batch may have, by keyword (``on_<kind>``).
CALLBACK_KINDS = ("success", "complete", "failure")
#: The enqueue arguments a member may carry (a member is always a new job: no unique key).
_MEMBER_FIELDS = {
    "queue_id",
    "topic",
    "payload",
    "priority",
    "delay",
    "at",
    "max_attempts",
    "job_id",
}
#: The enqueue arguments a callback may carry.
_CALLBACK_FIELDS = {"queue_id", "topic", "payload", "priority", "max_attempts"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStatus:
    """A batch's counts by outcome; ``done`` once closed and every member settled
    (its callbacks were then enqueued, in the transaction of the last settlement)."""

    batch_id: str
    queue_id: str
    open: bool
    total: int
    pending: int
    completed: int
    discarded: int
    dead: int
    cancelled: int
    created_ms: int
    callbacks: dict[str, str]

    @property
    def done(self) -> bool:
        return not self.open and self.pending == 0

    def counts(self) -> dict[str, int]:
        """The counts a callback's payload carries."""
        return {
            "total": self.total,
            "pending": self.pending,
            "completed": self.completed,
            "discarded": self.discarded,
            "dead": self.dead,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberResult:
    """One member of a batch: its state (``pending`` until it settles), what its handler
    returned (``result``, for a completed member; None when it returned None, or once
    the finished job's tombstone and result were purged), and a discarded member's
    ``reason``."""

    job_id: str
    state: str
    result: Any = None
    reason: str | None = None


def _spec(field: str, item: Any, allowed: set[str]) -> dict[str, Any]:
    """A member or callback as a dict of enqueue arguments (from a pair or a dict)."""
    if isinstance(item, tuple) and len(item) == 2:
        return {"topic": item[0], "payload": item[1]}
    if isinstance(item, Mapping):
        args = dict(item)
        unknown = set(args) - allowed
        if unknown:
            raise InvalidArgument(field, f"unknown field(s) {sorted(unknown)}")
        if "topic" not in args:
            raise InvalidArgument(field, "needs a topic")
        return args
    raise InvalidArgument(field, "must be a (topic, payload) pair or a dict of enqueue arguments")


def _members(queue: str, batch_id: str, jobs: Any) -> list[_Prepared]:
    if isinstance(jobs, str | bytes | Mapping) or not isinstance(jobs, Iterable):
        raise InvalidArgument("jobs", "must be a list of (topic, payload) pairs or dicts")
    prepared = []
    for index, item in enumerate(jobs):
        args = _spec(f"jobs[{index}]", item, _MEMBER_FIELDS)
        queue_id = args.pop("queue_id", queue)
        topic = args.pop("topic")
        payload = args.pop("payload", None)
        prepared.append(prepare(queue_id, topic, payload, batch=batch_id, **args))
    if not prepared:
        raise InvalidArgument("jobs", "a batch needs at least one member")
    ids = [item.job.id for item in prepared]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("jobs", "two members have the same job_id")
    return prepared


def _callback(kind: str, queue: str, item: Any) -> dict[str, Any]:
    """A callback validated (as the job it will be, counts included) and as stored."""
    field = f"on_{kind}"
    args = _spec(field, item, _CALLBACK_FIELDS)
    record = {
        "ji": new_job_id(),
        "q": args.get("queue_id", queue),
        "t": args["topic"],
        "p": args.get("payload"),
        "pr": args.get("priority", DEFAULT_PRIORITY),
        "m": args.get("max_attempts"),
    }
    # Validated as the job it will be: the largest counts it can carry included.
    sample = {"batch_id": "0" * 32, "counts": dict.fromkeys(BATCH_COUNTERS, 2**62)}
    payload = {**sample, "payload": record["p"]}
    pr, m = record["pr"], record["m"]
    prepare(record["q"], record["t"], payload, priority=pr, max_attempts=m, job_id=record["ji"])
    return record


def enqueue_batch(
    db: Database | Transaction,
    queue_id: str,
    jobs: Iterable[Any],
    *,
    on_success: Any = None,
    on_complete: Any = None,
    on_failure: Any = None,
    keep_open: bool = False,
) -> str:
    """Enqueue ``jobs`` as one batch on ``queue_id``; return the batch id.

    Args:
        db: a database, or the caller's transaction (joined).
        queue_id: the members' queue (a member dict may name another) and the callbacks'.
        jobs: the members, each a ``(topic, payload)`` pair or a dict of enqueue
            arguments (``topic``, ``payload``, ``queue_id``, ``priority``, ``delay``,
            ``at``, ``max_attempts``, ``job_id``).
        on_success: callback job when every member completed (a pair or a dict of
            ``topic``, ``payload``, ``queue_id``, ``priority``, ``max_attempts``).
        on_complete: callback job when every member settled, whatever the outcome.
        on_failure: callback job when every member settled and some did not complete.
        keep_open: leave the batch open for :func:`add_to_batch`; its callbacks fire
            only after :func:`close_batch`. By default the batch is closed at once.

    Raises:
        InvalidArgument: no members, a bad member or callback (named by its index or
            keyword), or a member ``job_id`` that is taken; nothing is written.
    """
    queue = check_name("queue_id", queue_id)
    assert queue is not None
    batch_id = new_job_id()
    members = _members(queue, batch_id, jobs)
    callbacks = {
        kind: _callback(kind, queue, item)
        for kind, item in zip(CALLBACK_KINDS, (on_success, on_complete, on_failure), strict=True)
        if item is not None
    }
    record = {"q": queue, "op": bool(keep_open), "c": now_ms(), "cb": callbacks}
    _create(db, batch_id, pack_value(record), members, bool(keep_open), Tries())
    return batch_id


@transactional
def _create(
    tr: Transaction,
    batch_id: str,
    record: bytes,
    members: list[_Prepared],
    open_: bool,
    tries: Tries,
) -> None:
    key = BATCHES.pack((batch_id,))
    first = tries.first()
    if not first and tr.get(key) is not None:
        return  # an earlier try committed
    tr.set(key, record)
    tr.set(BATCH_COUNTS.pack((batch_id, "left")), encode_count(int(open_)))
    _add(tr, batch_id, members, first)


def _add(tr: Transaction, batch_id: str, members: list[_Prepared], first_try: bool) -> None:
    """Write ``members`` (refusing a job id already taken) and count them."""
    chosen = [item for item in members if not item.fresh_id or not first_try]
    if chosen:
        found = tr.get_many([JOB_DIRECTORY.pack((item.job.id,)) for item in chosen])
        for item, entry in zip(chosen, found, strict=True):
            if entry is not None:
                raise InvalidArgument("jobs", f"job id {item.job.id!r} is already taken")
    store_batch(tr, members, first_try=first_try)
    for item in members:
        tr.set(BATCH_MEMBERS.pack((batch_id, item.job.id)), b"")
    tr.add(BATCH_COUNTS.pack((batch_id, "total")), encode_count(len(members)))
    left = BATCH_COUNTS.pack((batch_id, "left"))
    tr.set(left, encode_count(count(tr, left) + len(members)))


def _load(view: ReadView, batch_id: Any) -> dict[str, Any]:
    """The batch record of a checked ``batch_id`` (see :func:`quick.followers.load_batch`)."""
    ident = check_name("batch_id", batch_id)
    assert ident is not None
    return load_batch(view, ident)


def add_to_batch(db: Database | Transaction, batch_id: str, jobs: Iterable[Any]) -> list[str]:
    """Add members to an open batch; return their job ids.

    Raises:
        InvalidArgument: unknown or closed batch, no members, a bad member, or a member
            ``job_id`` that is taken; nothing is written.
    """
    check_name("batch_id", batch_id)
    # The members' queue defaults to the batch's: read it first (a read-only look).
    record = _peek(db, batch_id)
    members = _members(record["q"], batch_id, jobs)
    _add_members(db, batch_id, members, Tries())
    return [item.job.id for item in members]


@transactional
def _peek(tr: Transaction, batch_id: str) -> dict[str, Any]:
    return _load(tr.snapshot, batch_id)


@transactional
def _add_members(tr: Transaction, batch_id: str, members: list[_Prepared], tries: Tries) -> None:
    first = tries.first()
    if not first and tr.get(BATCH_MEMBERS.pack((batch_id, members[0].job.id))) is not None:
        return  # an earlier try committed
    record = _load(tr, batch_id)
    if not record["op"]:
        raise InvalidArgument("batch_id", f"batch {batch_id} is closed")
    _add(tr, batch_id, members, first)


def close_batch(db: Database | Transaction, batch_id: str) -> bool:
    """Close an open batch: no member can join it any more, and its callbacks fire once
    every member has settled (at once, in this transaction, if all have). True if this
    call closed it, False if it was closed already.

    Retry semantics: a retry after ``commit_unknown_result`` whose earlier try closed
    the batch answers True, as that try would have.

    Raises:
        BatchNotFound: no such batch.
    """
    return _close(db, batch_id, Tries())


@transactional
def _close(tr: Transaction, batch_id: str, tries: Tries) -> bool:
    tries.first()
    record = _load(tr, batch_id)
    if not record["op"]:
        return tries.unsure.get(batch_id) == "closed"
    closed = {**record, "op": False}
    tr.set(BATCHES.pack((batch_id,)), pack_value(closed))
    give_back_open_slot(tr, batch_id, closed, now_ms())
    tries.did({batch_id: "closed"})
    return True


def _status(view: ReadView, batch_id: str, record: dict[str, Any]) -> BatchStatus:
    counts = batch_counts(view, batch_id)
    callbacks = {
        kind: str(item.get("ji")) for kind, item in record["cb"].items() if isinstance(item, dict)
    }
    c = record.get("c")
    return BatchStatus(
        batch_id=batch_id,
        queue_id=record["q"],
        open=record["op"],
        total=counts["total"],
        pending=max(counts["left"] - int(record["op"]), 0),
        completed=counts["completed"],
        discarded=counts["discarded"],
        dead=counts["dead"],
        cancelled=counts["cancelled"],
        created_ms=c if isinstance(c, int) else 0,
        callbacks=callbacks,
    )


@transactional
def batch_status(tr: Transaction, batch_id: str) -> BatchStatus:
    """A batch's counts by outcome, whether it is open, and its callbacks' job ids.

    Raises:
        BatchNotFound: no such batch.
        CorruptValue: the batch record does not decode (named by its key).
    """
    return _status(tr.snapshot, batch_id, _load(tr.snapshot, batch_id))


@transactional
def batch_results(
    tr: Transaction, batch_id: str, *, after: str | None = None, limit: int = 1000
) -> list[MemberResult]:
    """One page of a batch's members, by job id, after ``after``: each one's state and
    result (job results, :mod:`quick.results`), read in two round trips. Pass the last
    job id of a page as ``after`` for the next; a 10,000-member batch is ten pages.

    Raises:
        BatchNotFound: no such batch. InvalidArgument: a limit that is not a positive integer.
    """
    check_positive_ms("limit", limit)
    _load(tr.snapshot, batch_id)
    begin, end = BATCH_MEMBERS.range((batch_id,))
    if after is not None:
        begin = BATCH_MEMBERS.pack((batch_id, after)) + b"\x00"
    rows = tr.snapshot.get_range(begin, end, limit=limit)
    ids = [BATCH_MEMBERS.unpack(key)[1] for key, _ in rows]
    results = tr.get_many([RESULTS.pack((job_id,)) for job_id in ids], snapshot=True)
    page = []
    for job_id, (key, value), data in zip(ids, rows, results, strict=True):
        record = _result(job_id, data)
        page.append(
            MemberResult(
                job_id=job_id,
                state=_member_state(key, value),
                result=record.get("rv"),
                reason=record.get("e"),
            )
        )
    return page


def _result(job_id: str, data: bytes | None) -> dict[str, Any]:
    """A member's result record ({} when none, or when it does not decode: logged)."""
    if data is None:
        return {}
    try:
        return decode_result(data)
    except CorruptValue as error:
        log.warning("%s: %s", describe(RESULTS.pack((job_id,))), error)
        return {}


def _member_state(key: bytes, value: bytes) -> str:
    if not value:
        return "pending"
    try:
        state = unpack_value(value).get("s")
    except (CorruptValue, AttributeError):
        state = None
    if not isinstance(state, str):
        log.warning("batch member record that does not decode %s", describe(key))
        return "unknown"
    return state


@transactional
def list_batches(tr: Transaction, *, limit: int = 100) -> Sequence[BatchStatus]:
    """Batches, oldest first (ids sort by creation), with their counts; a batch record
    that does not decode is named in the log and left out."""
    check_positive_ms("limit", limit)
    found = []
    for key, _ in tr.snapshot.get_range(*BATCHES.range(), limit=limit):
        (batch_id,) = BATCHES.unpack(key)
        try:
            found.append(_status(tr.snapshot, batch_id, _load(tr.snapshot, batch_id)))
        except CorruptValue as error:
            log.warning("batch record that does not decode %s: %s", describe(key), error)
    return found
