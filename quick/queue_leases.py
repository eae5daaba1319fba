"""The queue lease: the short lease a consumer takes on a queue before leasing its jobs.

Theory of operation
-------------------
One record per queue at ``("ql", queue)``: ``{"o": owner, "ex": until_ms, "rc": recent
claims}``. QuiCK's consumers take it so that only one of them claims from a queue at a
time (:func:`lease_queue`); it is a key of its own, apart from the pointer
(:mod:`quick.pointers`), so producers moving the pointer never conflict with it. ``rc``
lists the last :data:`RECENT_CLAIMS` claims' ``[token, job ids]`` (:func:`remember_claim`),
which lets a claim retried after an unknown commit result find what its earlier try
took (:func:`claimed_by`; the claims themselves are made in :mod:`quick.claiming`). A
corrupt record reads as absent and the next lease written overwrites it.
"""

from __future__ import annotations

from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import QUEUE_LEASES
from keyspace.protocol import ReadView, Transaction
from quick.pointers import is_int, load_pointer, warn_corrupt

__all__ = [
    "RECENT_CLAIMS",
    "claimed_by",
    "decode_queue_lease",
    "held_by_other",
    "lease_queue",
    "leased_by_other",
    "queue_lease",
    "remember_claim",
    "write_queue_lease",
]

#: Claims remembered on the queue lease, so a claim retried after commit_unknown_result
#: recognises its committed try even when other consumers claimed from the queue since.
RECENT_CLAIMS = 4


def decode_queue_lease(data: bytes) -> dict[str, Any]:
    """A queue lease record (see :func:`queue_lease`); CorruptValue otherwise."""
    record = unpack_value(data)
    if not isinstance(record, dict) or not is_int(record.get("ex", 0)):
        raise CorruptValue(f"queue lease of the wrong shape: {record!r}")
    owner, recent = record.get("o"), record.get("rc") or []
    if not (owner is None or isinstance(owner, str)) or not isinstance(recent, list):
        raise CorruptValue(f"queue lease of the wrong shape: {record!r}")
    for entry in recent:
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or not isinstance(entry[1], list | tuple)
            or not all(isinstance(job_id, str) for job_id in entry[1])
        ):
            raise CorruptValue(f"queue lease of the wrong shape: {record!r}")
    return dict(record)


def queue_lease(view: ReadView, queue: str) -> dict[str, Any] | None:
    """The queue lease record: ``{"o": owner, "ex": until_ms, "rc": recent claims}``, where
    ``rc`` lists the last few claims' ``[token, job ids]`` (see :func:`claimed_by`).

    A corrupt record reads as None (and is named in a warning): the next lease
    written overwrites it.
    """
    key = QUEUE_LEASES.pack((queue,))
    return _decoded(key, view.get(key))


def _decoded(key: bytes, data: bytes | None) -> dict[str, Any] | None:
    """The queue lease record stored at ``key`` as ``data``; None when absent or corrupt."""
    if data is None:
        return None
    try:
        return decode_queue_lease(data)
    except CorruptValue as error:
        warn_corrupt(key, error, "treated as absent and overwritten")
        return None


def write_queue_lease(tr: Transaction, queue: str, record: dict[str, Any]) -> None:
    """Store ``record`` as the queue lease of ``queue``."""
    tr.set(QUEUE_LEASES.pack((queue,)), pack_value(record))


def lease_queue(tr: Transaction, queue: str, owner: str, now: int, lease_ms: int) -> bool:
    """Take the short queue lease that precedes leasing its jobs; False if someone holds it.

    Also False when the queue's pointer is gone or no longer due (another consumer drained it).
    """
    lease = queue_lease(tr, queue)
    if _held_by_other(lease, owner, now):
        return False
    pointer, corrupt = load_pointer(tr.snapshot, queue)
    if not corrupt and (pointer is None or pointer["v"] > now):
        return False
    record = dict(lease or {"rc": []})
    record.update(o=owner, ex=now + lease_ms)
    write_queue_lease(tr, queue, record)
    return True


def _held_by_other(lease: dict[str, Any] | None, owner: str, now: int) -> bool:
    return lease is not None and lease.get("ex", 0) > now and lease.get("o") != owner


def leased_by_other(tr: ReadView, queue: str, owner: str, now: int) -> bool:
    """Whether a consumer other than ``owner`` holds the queue's lease at ``now``."""
    return _held_by_other(queue_lease(tr, queue), owner, now)


def held_by_other(key: bytes, data: bytes | None, owner: str, now: int) -> bool:
    """:func:`leased_by_other` of a queue lease already read: ``data`` as stored at
    ``key`` (None: absent; corrupt reads as absent). A claim round reads a chunk's leases
    in one call and decides from the values."""
    return data is not None and _held_by_other(_decoded(key, data), owner, now)


def claimed_by(lease: dict[str, Any] | None, token: str) -> list[str] | None:
    """The job ids the claim ``token`` leased, if it is one of the claims ``lease``
    (a queue lease record, or None) remembers; else None."""
    for earlier, job_ids in (lease or {}).get("rc") or []:
        if earlier == token:
            return list(job_ids)
    return None


def remember_claim(
    tr: Transaction,
    queue: str,
    lease: dict[str, Any] | None,
    owner: str,
    token: str,
    job_ids: list[str],
) -> None:
    """Release the queue lease ``lease`` (as read at the claim's start), remembering the
    claim ``token`` and the jobs it leased among the last :data:`RECENT_CLAIMS`."""
    record = {k: v for k, v in (lease or {}).items() if k in ("o", "ex", "rc")}
    recent = list((lease or {}).get("rc") or [])
    record.update(o=owner, ex=0, rc=[[token, job_ids], *recent[: RECENT_CLAIMS - 1]])
    write_queue_lease(tr, queue, record)
