"""The pointer index: which queues may have visible work, and since when.

Theory of operation
-------------------
Every queue holding jobs has exactly one pointer: a record at ``("ptr", queue)``
carrying ``vis_ms``, mirrored by one empty index entry ``("ix", vis_ms, queue)`` that
scanners range-read up to *now*. The pointer may be early (a visit then finds nothing
due and moves it) but must never be later than the queue's earliest visible job by
more than :data:`REWRITE_THRESHOLD_MS`.

* **Producers** (enqueue, and fail/snooze/release putting a job back) read the pointer
  serializably and write it only when they must: no pointer yet (create), or the pointer
  is later than the new job by more than the threshold (move it earlier; QuiCK's
  "Vesting(p) >> Vesting(x)" rule). In a busy queue the pointer is already due, so
  producers leave it alone.
* **Consumers** move the pointer only when the queue's earliest visibility really
  changes: when a claim drains the ready jobs (to the first scheduled or leased job,
  whose lease expiry is its visibility) or empties the queue (to *now + grace*, marked
  empty). While a queue stays busy its pointer is untouched, so its producers and
  consumers do not conflict. The queue lease is a separate key (``("ql", queue)``)
  for the same reason.
* **Races.** A producer's serializable read of the pointer conflicts with any consumer
  move or collection that commits first, so it retries and sees the new pointer; a
  consumer's serializable reads of the job indexes conflict with any job a producer
  committed first. Either order leaves the pointer correct.
* **Wake-ups.** Every move that makes work visible sooner than the index said (a
  new pointer, or one moved earlier) adds one to the ``("wake",)`` counter, an atomic
  add that conflicts with nothing. Idle consumers watch that key instead of polling.
* **Collection.** A pointer marked empty for :data:`EMPTY_GRACE_MS` whose queue is
  still empty is deleted (by the claim that finds it so, or by :func:`collect`). The
  collector reads both job indexes serializably, so an enqueue committing first makes
  it retry; an enqueue committing after it conflicts on the pointer it deleted and
  recreates it. No job is ever left without a pointer.
"""

from __future__ import annotations

from typing import Any

from keyspace.codec import pack_value, unpack_value
from keyspace.layout import POINTER_INDEX, POINTERS, QUEUE_LEASES, WAKE, QueueKeys, queue_keys
from keyspace.protocol import ReadView, Transaction

__all__ = [
    "REWRITE_THRESHOLD_MS",
    "EMPTY_GRACE_MS",
    "ensure_visible",
    "defer",
    "refresh",
    "collect",
    "scan",
    "read_pointer",
    "next_visible",
    "lease_queue",
    "queue_lease",
    "write_queue_lease",
]

#: A producer moves the pointer earlier only when it is later than its job by more than this.
REWRITE_THRESHOLD_MS = 250
#: How long a drained queue keeps its pointer before collection.
EMPTY_GRACE_MS = 30_000


_ONE = (1).to_bytes(8, "little")


def next_visible(view: ReadView) -> int | None:
    """The earliest ``vis_ms`` in the pointer index (None when no queue has work)."""
    rows = view.get_range(*POINTER_INDEX.range(), limit=1)
    return None if not rows else int(POINTER_INDEX.unpack(rows[0][0])[0])


def read_pointer(view: ReadView, queue: str) -> dict[str, Any] | None:
    """The pointer record of ``queue`` (``{"v": vis_ms, "e": empty_since or None}``)."""
    data = view.get(POINTERS.pack((queue,)))
    return None if data is None else dict(unpack_value(data))


def _move(
    tr: Transaction, queue: str, old: dict[str, Any] | None, vis_ms: int, empty_since: int | None
) -> None:
    if old is not None:
        tr.clear(POINTER_INDEX.pack((old["v"], queue)))
    if old is None or vis_ms < old["v"]:
        tr.add(WAKE, _ONE)
    tr.set(POINTER_INDEX.pack((vis_ms, queue)), b"")
    tr.set(POINTERS.pack((queue,)), pack_value({"v": vis_ms, "e": empty_since}))


def ensure_visible(tr: Transaction, queue: str, vis_ms: int) -> None:
    """Make the pointer of ``queue`` cover a job visible at ``vis_ms`` (producer side)."""
    pointer = read_pointer(tr, queue)
    if pointer is None or pointer["v"] > vis_ms + REWRITE_THRESHOLD_MS:
        _move(tr, queue, pointer, vis_ms, None)


def defer(tr: Transaction, queue: str, vis_ms: int) -> None:
    """Move the pointer of a queue with visible jobs later, to ``vis_ms`` (at most
    :data:`REWRITE_THRESHOLD_MS` from now, so the pointer rule holds): a queue at its
    limits (:mod:`quick.limits`) is left alone by scanners until then."""
    pointer = read_pointer(tr, queue)
    if pointer is not None and pointer["v"] < vis_ms:
        _move(tr, queue, pointer, vis_ms, None)


def _first(tr: Transaction, bounds: tuple[bytes, bytes]) -> bytes | None:
    rows = tr.get_range(*bounds, limit=1)
    return rows[0][0] if rows else None


def refresh(
    tr: Transaction,
    keys: QueueKeys,
    now: int,
    grace_ms: int = EMPTY_GRACE_MS,
    *,
    ready_left: bool = False,
) -> bool:
    """Point the queue at its true earliest visibility after a claim (consumer side).

    Deletes the pointer instead when the queue has been empty for ``grace_ms``.
    ``ready_left`` says the caller already saw ready jobs remain (saves a read).
    Returns False when the queue no longer has a pointer.
    """
    queue = keys.queue
    pointer = read_pointer(tr, queue)
    if ready_left or _first(tr, keys.ready_range()) is not None:
        if pointer is None or pointer["v"] > now:
            _move(tr, queue, pointer, now, None)
        return True
    first = _first(tr, keys.scheduled_range())
    if first is not None:
        vis_ms, _ = keys.unpack_scheduled(first)
        if pointer is None or pointer["v"] != vis_ms:
            _move(tr, queue, pointer, vis_ms, None)
        return True
    if pointer is None:
        return False
    if pointer["e"] is None:
        _move(tr, queue, pointer, now + grace_ms, now)
        return True
    if pointer["e"] + grace_ms <= now:
        _delete(tr, queue, pointer)
        return False
    return True


def _delete(tr: Transaction, queue: str, pointer: dict[str, Any]) -> None:
    tr.clear(POINTER_INDEX.pack((pointer["v"], queue)))
    tr.clear(POINTERS.pack((queue,)))
    tr.clear(QUEUE_LEASES.pack((queue,)))


def collect(tr: Transaction, queue: str, now: int, grace_ms: int = EMPTY_GRACE_MS) -> bool:
    """Delete the pointer of ``queue`` if the queue has stayed empty for ``grace_ms``."""
    pointer = read_pointer(tr, queue)
    if pointer is None:
        return False
    keys = queue_keys(queue)
    if _first(tr, keys.ready_range()) is not None or _first(tr, keys.scheduled_range()):
        return False
    if pointer["e"] is None:
        _move(tr, queue, pointer, now + grace_ms, now)
        return False
    if pointer["e"] + grace_ms > now:
        return False
    _delete(tr, queue, pointer)
    return True


def scan(
    view: ReadView, now: int, *, after: bytes | None = None, limit: int = 100
) -> list[tuple[bytes, str]]:
    """Index entries due at ``now`` as ``(index key, queue)``, from ``after`` (exclusive) on.

    Scanners call this through a snapshot view: it adds no conflicts.
    """
    begin, _ = POINTER_INDEX.range()
    if after is not None:
        begin = max(begin, after + b"\x00")
    end = POINTER_INDEX.pack((now + 1,))
    out = []
    for key, _ in view.get_range(begin, end, limit=limit):
        _, queue = POINTER_INDEX.unpack(key)
        out.append((key, queue))
    return out


def queue_lease(view: ReadView, queue: str) -> dict[str, Any] | None:
    """The queue lease record: ``{"o": owner, "u": until_ms, "r": recent claims}``, where
    ``r`` lists the last few claims' ``[token, job ids]`` (see ``quick.leases``)."""
    data = view.get(QUEUE_LEASES.pack((queue,)))
    return None if data is None else dict(unpack_value(data))


def write_queue_lease(tr: Transaction, queue: str, record: dict[str, Any]) -> None:
    tr.set(QUEUE_LEASES.pack((queue,)), pack_value(record))


def lease_queue(tr: Transaction, queue: str, owner: str, now: int, lease_ms: int) -> bool:
    """Take the short queue lease that precedes leasing its jobs; False if someone holds it.

    Also False when the queue's pointer is gone or no longer due (another consumer drained it).
    """
    lease = queue_lease(tr, queue)
    if lease is not None and lease["u"] > now and lease["o"] != owner:
        return False
    pointer = read_pointer(tr.snapshot, queue)
    if pointer is None or pointer["v"] > now:
        return False
    record = dict(lease or {"r": []})
    record.update(o=owner, u=now + lease_ms)
    write_queue_lease(tr, queue, record)
    return True
