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
  consumers do not conflict. The queue lease is a separate key (``("ql", queue)``,
  :mod:`quick.queue_leases`) for the same reason.
* **Races.** A producer's serializable read of the pointer conflicts with any consumer
  move or collection that commits first, so it retries and sees the new pointer; a
  consumer's serializable reads of the job indexes conflict with any job a producer
  committed first. Either order leaves the pointer correct.
* **Wake-ups.** Every move that makes work visible sooner than the index said (a
  new pointer, or one moved earlier) adds one to the ``("wake",)`` counter, an atomic
  add that conflicts with nothing. Idle consumers watch that key instead of polling.
* **Collection.** A pointer marked empty for :data:`EMPTY_GRACE_MS` whose queue is
  still empty is deleted (by the claim that finds it so, or by :func:`collect_empty_pointer`). The
  collector reads both job indexes serializably, so an enqueue committing first makes
  it retry; an enqueue committing after it conflicts on the pointer it deleted and
  recreates it. No job is ever left without a pointer.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import (
    POINTER_INDEX,
    POINTERS,
    QUEUE_LEASES,
    WAKE,
    QueueKeys,
    describe,
    queue_keys,
)
from keyspace.protocol import ReadView, Transaction
from quick import counters

__all__ = [
    "REWRITE_THRESHOLD_MS",
    "EMPTY_GRACE_MS",
    "UNREAD",
    "ensure_visible",
    "defer",
    "refresh",
    "collect_empty_pointer",
    "scan",
    "read_pointer",
    "decode_pointer",
    "unpack_index",
    "drop_stray",
    "next_visible",
    "load_pointer",
    "pointer_key",
    "warn_corrupt",
    "is_int",
]

#: A producer moves the pointer earlier only when it is later than its job by more than this.
REWRITE_THRESHOLD_MS = 250
#: ``scheduled`` of :func:`refresh` when the caller has not read the scheduled index.
UNREAD = -1
#: How long a drained queue keeps its pointer before collection.
EMPTY_GRACE_MS = 30_000


_ONE = (1).to_bytes(8, "little")

log = logging.getLogger("quick.store")


@functools.lru_cache(maxsize=4096)
def pointer_key(queue: str) -> bytes:
    """The key of ``queue``'s pointer record (cached: a claim round reads it ahead, reads
    it again and rewrites it, for each one-job queue it visits)."""
    return POINTERS.pack((queue,))


def is_int(value: Any) -> bool:
    """True for an int that is not a bool (msgpack decodes both)."""
    return isinstance(value, int) and not isinstance(value, bool)


def decode_pointer(data: bytes) -> dict[str, Any]:
    """A pointer record ``{"v": vis_ms, "es": empty_since or None}``; CorruptValue otherwise."""
    record = unpack_value(data)
    if (
        not isinstance(record, dict)
        or not is_int(record.get("v"))
        or not (record.get("es") is None or is_int(record.get("es")))
    ):
        raise CorruptValue(f"pointer record of the wrong shape: {record!r}")
    return {"v": record["v"], "es": record.get("es")}


def warn_corrupt(key: bytes, error: Exception, action: str) -> None:
    """Name a record that does not decode; it is treated as absent (``action`` says how)."""
    log.warning("corrupt record %s: %s; %s", describe(key), error, action)


def load_pointer(view: ReadView, queue: str) -> tuple[dict[str, Any] | None, bool]:
    """(pointer record or None, whether a corrupt record is stored in its place)."""
    key = pointer_key(queue)
    data = view.get(key)
    if data is None:
        return None, False
    try:
        return decode_pointer(data), False
    except CorruptValue as error:
        warn_corrupt(key, error, "treated as absent and rewritten from the queue's indexes")
        return None, True


def next_visible(view: ReadView) -> int | None:
    """The earliest ``vis_ms`` in the pointer index (None when no queue has work)."""
    rows = view.get_range(*POINTER_INDEX.range(), limit=1)
    if not rows:
        return None
    entry = unpack_index(rows[0][0])
    return None if entry is None else entry[0]


def unpack_index(key: bytes) -> tuple[int, str] | None:
    """``(vis_ms, queue)`` of a pointer-index key; None (and a warning) when it is not one."""
    try:
        vis_ms, queue = POINTER_INDEX.unpack(key)
    except Exception as error:  # fdb.tuple raises several kinds on foreign bytes
        warn_corrupt(key, error, "pointer-index key skipped")
        return None
    if not is_int(vis_ms) or not isinstance(queue, str):
        warn_corrupt(
            key, ValueError(f"unpacks to {(vis_ms, queue)!r}"), "pointer-index key skipped"
        )
        return None
    return vis_ms, queue


def read_pointer(view: ReadView, queue: str) -> dict[str, Any] | None:
    """The pointer record of ``queue`` (``{"v": vis_ms, "es": empty_since or None}``);
    a corrupt record reads as None (and is named in a warning)."""
    return load_pointer(view, queue)[0]


def _move(
    tr: Transaction, queue: str, old: dict[str, Any] | None, vis_ms: int, empty_since: int | None
) -> None:
    if old is not None:
        tr.clear(POINTER_INDEX.pack((old["v"], queue)))
    if old is None or vis_ms < old["v"]:
        tr.add(WAKE, _ONE)
    tr.set(POINTER_INDEX.pack((vis_ms, queue)), b"")
    tr.set(pointer_key(queue), pack_value({"v": vis_ms, "es": empty_since}))


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
    ready_left: bool | None = None,
    scheduled: int | None = UNREAD,
    draining: bool = False,
) -> bool:
    """Point the queue at its true earliest visibility after a claim (consumer side).

    Deletes the pointer instead when the queue has been empty for ``grace_ms``.
    ``ready_left`` is what the caller already knows of the ready index from its own
    serializable read in this transaction (ready jobs remain / none remain), saving a
    read; None reads it. ``scheduled`` likewise: the first scheduled entry's ``vis_ms``
    as this transaction now stands (None: the index is empty), :data:`UNREAD` to read it.
    ``draining``: the only scheduled entries are of jobs this transaction just leased, so
    the queue is empty once they settle; the pointer is marked empty from now, and the
    visit at their lease expiry collects it if it is still empty then (one visit fewer
    for a one-job queue; the marking counts only while both indexes are empty).
    Returns False when the queue no longer has a pointer.
    """
    queue = keys.queue
    pointer, corrupt = load_pointer(tr, queue)
    if ready_left is None:
        ready_left = _first(tr, keys.ready_range()) is not None
    if ready_left:
        if pointer is None or pointer["v"] > now:
            _move(tr, queue, pointer, now, None)
        return True
    if scheduled == UNREAD:
        first = _first(tr, keys.scheduled_range())
        scheduled = None if first is None else keys.unpack_scheduled(first)[0]
    if scheduled is not None:
        vis_ms = scheduled
        since = now if draining else None
        if pointer is None or pointer["v"] != vis_ms or pointer["es"] != since:
            _move(tr, queue, pointer, vis_ms, since)
        return True
    if pointer is None:
        if corrupt:
            tr.clear(pointer_key(queue))
        return False
    if pointer["es"] is None:
        _move(tr, queue, pointer, now + grace_ms, now)
        return True
    if pointer["es"] + grace_ms <= now:
        _delete(tr, queue, pointer)
        return False
    _wait_out(tr, queue, pointer, grace_ms)
    return True


def _wait_out(tr: Transaction, queue: str, pointer: dict[str, Any], grace_ms: int) -> None:
    """Point an empty queue's pointer at the end of its grace, when it is due earlier (it
    was marked empty by the claim that drained it), so scanners skip it until then."""
    until = pointer["es"] + grace_ms
    if pointer["v"] < until:
        _move(tr, queue, pointer, until, pointer["es"])


def _delete(tr: Transaction, queue: str, pointer: dict[str, Any]) -> None:
    tr.clear(POINTER_INDEX.pack((pointer["v"], queue)))
    tr.clear(pointer_key(queue))
    tr.clear(QUEUE_LEASES.pack((queue,)))
    counters.clear_zeros(tr, queue_keys(queue))


def collect_empty_pointer(
    tr: Transaction, queue: str, now: int, grace_ms: int = EMPTY_GRACE_MS
) -> bool:
    """Delete the pointer of ``queue`` if the queue has stayed empty for ``grace_ms``; the
    first call on an empty queue marks it empty. True when the pointer was deleted."""
    pointer, corrupt = load_pointer(tr, queue)
    keys = queue_keys(queue)
    if corrupt:
        return not refresh(tr, keys, now, grace_ms)
    if pointer is None:
        return False
    if _first(tr, keys.ready_range()) is not None or _first(tr, keys.scheduled_range()):
        return False
    if pointer["es"] is None:
        _move(tr, queue, pointer, now + grace_ms, now)
        return False
    if pointer["es"] + grace_ms > now:
        _wait_out(tr, queue, pointer, grace_ms)
        return False
    _delete(tr, queue, pointer)
    return True


def scan(
    view: ReadView,
    now: int,
    *,
    after: bytes | None = None,
    limit: int = 100,
    bad: list[bytes] | None = None,
) -> list[tuple[bytes, str]]:
    """Index entries due at ``now`` as ``(index key, queue)``, from ``after`` (exclusive) on.

    Scanners call this through a snapshot view: it adds no conflicts. Keys that do not
    unpack to ``(vis_ms, queue)`` are left out, named in a warning and added to ``bad``.
    """
    begin, _ = POINTER_INDEX.range()
    if after is not None:
        begin = max(begin, after + b"\x00")
    end = POINTER_INDEX.pack((now + 1,))
    out = []
    for key, _ in view.get_range(begin, end, limit=limit):
        entry = unpack_index(key)
        if entry is None:
            if bad is not None:
                bad.append(key)
            continue
        out.append((key, entry[1]))
    return out


def drop_stray(tr: Transaction, key: bytes, queue: str) -> None:
    """Clear the pointer-index entry ``key`` of ``queue`` unless it is the one its pointer
    record names (a stray left by a corrupt or lost pointer record)."""
    if tr.snapshot.get(key) is None:  # moved by this transaction (reads see its writes)
        return
    pointer = read_pointer(tr, queue)
    if pointer is None or POINTER_INDEX.pack((pointer["v"], queue)) != key:
        log.warning("stray pointer-index entry %s: cleared", describe(key))
        tr.clear(key)
