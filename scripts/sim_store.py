"""The simulator's eyes: one snapshot of the whole store, and the invariants checked on it.

Everything here reads the keyspace directly (through :mod:`keyspace.layout`), never
through quick's own readers, so a bug in quick cannot hide itself from the check. A
check returns a list of violations (strings); an empty list means the store is sound.

Invariants of the store alone (see ``docs/simulation.md``):

* pointers: a pointer record and its index entry mirror each other (at most one entry
  per queue); every queue holding a job has a pointer, no later than its earliest job
  by more than the rewrite threshold, and due (up to the threshold) when it has ready jobs;
* counters: each queue's scheduled/ready/leased counters equal the records in that
  state, and its dead counter equals its dead letters;
* places: every job record has exactly one index entry, the one its state names;
  no index entry lacks its record; no job is both a record and a dead letter; a job
  record's directory entry names its queue and no outcome; a dead letter's says dead;
* unique keys: a reservation names a pending job holding that key, and back.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from keyspace.codec import unpack_value
from keyspace.layout import ROOT
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick.jobs import COUNTED_STATES, Job, JobState
from quick.pointers import REWRITE_THRESHOLD_MS
from quick.results import decode_result

__all__ = ["APP", "Snapshot", "read_store", "check_store"]

#: The simulated application's own data, next to quick's: ``("app", "order", job_id)``
#: written with a transactional enqueue, ``("app", "fx", job_id)`` an int64 counter
#: added to by a transactional completion.
APP = Subspace(("app",))


@dataclass
class Snapshot:
    """The store at one read version, decoded into plain dicts."""

    pointers: dict[str, int] = field(default_factory=dict)
    index: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    jobs: dict[str, Job] = field(default_factory=dict)
    ready: dict[str, list[tuple[int, int, str]]] = field(default_factory=lambda: defaultdict(list))
    scheduled: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    unique: dict[tuple[str, str], str] = field(default_factory=dict)
    dead: dict[str, str] = field(default_factory=dict)
    directory: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: set[str] = field(default_factory=set)
    effects: dict[str, int] = field(default_factory=dict)
    #: Job id -> its decoded result record (``("res", job_id)``).
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    corrupt: list[str] = field(default_factory=list)


def read_store(db: Database) -> Snapshot:
    """Read every quick and app key in one snapshot (no conflicts, nothing written)."""
    tr = db.create_transaction()
    try:
        rows = [row for tag in _READ for row in tr.snapshot.get_range(*ROOT[tag].range())]
        app_rows = tr.snapshot.get_range(*APP.range())
    finally:
        tr.cancel()
    snap = Snapshot()
    for key, value in rows:
        _take(snap, ROOT.unpack(key), value)
    for key, value in app_rows:
        kind, job_id = APP.unpack(key)
        if kind == "order":
            snap.orders.add(job_id)
        elif kind == "fx":
            snap.effects[job_id] = struct.unpack("<q", value)[0]
    return snap


#: The subspaces the invariants read (workflow records, cron and the finished-jobs
#: index are left out: the first are checked through the workflow views).
_READ = ("ptr", "ix", "q", "dl", "id", "res")


def _take(snap: Snapshot, items: tuple[Any, ...], value: bytes) -> None:
    tag = items[0]
    if tag == "ptr":
        snap.pointers[items[1]] = unpack_value(value)["v"]
    elif tag == "ix":
        snap.index[items[2]].append(items[1])
    elif tag == "dl":
        snap.dead[items[2]] = items[1]
    elif tag == "id":
        snap.directory[items[1]] = dict(unpack_value(value))
    elif tag == "res":
        try:
            snap.results[items[1]] = decode_result(value)
        except Exception as error:  # the check reports it; it must not stop the read
            snap.corrupt.append(f"result record {items[1]!r} does not decode: {error}")
    elif tag == "q":
        queue, kind = items[1], items[2]
        if kind == "j":
            try:
                snap.jobs[items[3]] = Job.from_value(queue, items[3], value)
            except Exception as error:  # the check reports it; it must not stop the read
                snap.corrupt.append(f"job record {items[3]!r} does not decode: {error}")
        elif kind == "r":
            snap.ready[queue].append((items[3], items[4], items[5]))
        elif kind == "s":
            snap.scheduled[queue].append((items[3], items[4]))
        elif kind == "n":
            snap.counters[queue, items[3]] = struct.unpack("<q", value)[0]
        elif kind == "u":
            snap.unique[queue, items[3]] = value.decode()


def check_store(snap: Snapshot, now: int) -> list[str]:
    """Every violation of the store's own invariants (see the module docstring)."""
    return [
        *snap.corrupt,
        *_check_pointers(snap, now),
        *_check_counters(snap),
        *_check_places(snap),
        *_check_unique(snap),
        *_check_results(snap),
    ]


def _check_results(snap: Snapshot) -> list[str]:
    """A result record only beside the tombstone of a job that completed (``rv``) or was
    discarded (``e``): one that outlived its tombstone, or sits beside any other, is a leak."""
    out = []
    for job_id, record in sorted(snap.results.items()):
        state = snap.directory.get(job_id, {}).get("s")
        wanted = {"completed": "rv", "discarded": "e"}.get(str(state))
        if wanted is None or set(record) != {wanted}:
            out.append(f"result record {record!r:.80} of job {job_id} beside tombstone {state}")
    return out


def _check_pointers(snap: Snapshot, now: int) -> list[str]:
    out = []
    queues = set(snap.pointers) | set(snap.index) | set(snap.ready) | set(snap.scheduled)
    for queue in sorted(queues):
        record, entries = snap.pointers.get(queue), snap.index.get(queue, [])
        where = f"queue {queue!r}: pointer {record}, index entries {entries}"
        if record is None and entries:
            out.append(f"{where}: an index entry without a pointer record")
        elif record is not None and entries != [record]:
            out.append(f"{where}: pointer record and index entries disagree")
        visible = [vis for _, vis, _ in snap.ready.get(queue, [])]
        visible += [vis for vis, _ in snap.scheduled.get(queue, [])]
        if not visible:
            continue
        if record is None:
            out.append(f"{where}: the queue holds jobs but has no pointer")
            continue
        earliest = min(visible)
        if record > earliest + REWRITE_THRESHOLD_MS:
            out.append(f"{where}: pointer later than the earliest job ({earliest}) + threshold")
        if snap.ready.get(queue) and record > now + REWRITE_THRESHOLD_MS:
            out.append(f"{where}: ready jobs but the pointer is not due at now={now}")
    return out


def _check_counters(snap: Snapshot) -> list[str]:
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for job in snap.jobs.values():
        expected[job.queue, job.state.value] += 1
    for queue in snap.dead.values():
        expected[queue, JobState.DEAD.value] += 1
    out = []
    for key in sorted(set(expected) | set(snap.counters)):
        if key[1] not in {state.value for state in COUNTED_STATES}:
            out.append(f"queue {key[0]!r}: a counter for state {key[1]!r}, which is not counted")
        elif snap.counters.get(key, 0) != expected.get(key, 0):
            out.append(
                f"queue {key[0]!r}: counter {key[1]} = {snap.counters.get(key, 0)}, "
                f"but {expected.get(key, 0)} jobs are {key[1]}"
            )
    return out


def _check_places(snap: Snapshot) -> list[str]:
    entries: dict[str, list[tuple[str, tuple[Any, ...]]]] = defaultdict(list)
    for queue, rows in snap.ready.items():
        for priority, vis, job_id in rows:
            entries[job_id].append((queue, ("r", priority, vis)))
    for queue, srows in snap.scheduled.items():
        for vis, job_id in srows:
            entries[job_id].append((queue, ("s", vis)))
    out = []
    for job_id, job in snap.jobs.items():
        want: tuple[str, tuple[Any, ...]]
        if job.state is JobState.READY:
            want = (job.queue, ("r", job.priority, job.vis_ms))
        else:
            want = (job.queue, ("s", job.vis_ms))
        if entries.get(job_id) != [want]:
            out.append(
                f"job {job_id} ({job.state.value}, vis {job.vis_ms}): index entries "
                f"{entries.get(job_id, [])}, expected exactly {[want]}"
            )
        if job_id in snap.dead:
            out.append(f"job {job_id} is both a queue record and a dead letter")
        entry = snap.directory.get(job_id)
        if entry is None or entry.get("q") != job.queue or "s" in entry:
            out.append(f"job {job_id} is queued but its directory entry is {entry}")
        if job.state is JobState.LEASED and not job.owner:
            out.append(f"job {job_id} is leased without an owner")
    for job_id in sorted(set(entries) - set(snap.jobs)):
        out.append(f"index entries {entries[job_id]} for job {job_id}, which has no record")
    for job_id, queue in snap.dead.items():
        entry = snap.directory.get(job_id)
        if entry is None or entry.get("s") != "dead" or entry.get("q") != queue:
            out.append(f"dead letter {job_id} has directory entry {entry}")
    return out


def _check_unique(snap: Snapshot) -> list[str]:
    out = []
    for (queue, key), holder in snap.unique.items():
        job = snap.jobs.get(holder)
        if job is None or job.queue != queue or job.unique_key != key:
            out.append(f"unique key {key!r} of {queue!r} is held by {holder}, not a pending job")
    for job in snap.jobs.values():
        if job.unique_key is not None and snap.unique.get((job.queue, job.unique_key)) != job.id:
            out.append(f"job {job.id} has unique key {job.unique_key!r} but does not hold it")
    return out
