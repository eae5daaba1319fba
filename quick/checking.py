"""``quick check --deep``: walk the whole keyspace, report what does not decode and every
broken invariant, and (with ``repair``) fix what can be fixed without losing a job.

Theory of operation
-------------------
The walk reads the keyspace in pages of :data:`PAGE` keys, one snapshot transaction
each (no transaction outlives FoundationDB's five seconds, and the walk adds no
conflicts), and builds a model of every queue: job records, index entries, counters,
pointer and pointer-index entries, dead letters, and the job directory. It then checks:

* every record decodes (jobs, pointers, queue leases, dead letters, directory entries,
  cron schedules, queue limits and rate buckets, moved markers, and jobs staged by a
  migration) and every key unpacks to a known shape;
* every queue with work has exactly one pointer whose index entry matches its record;
* each index entry matches a job record, and each record has its entry;
* the counters equal the counts of records by state (dead: the queue's dead letters);
* every job id is in exactly one place: a queue record, a dead letter, or a finished
  tombstone; and every queue record has its directory entry, naming its queue (without
  it ``get_job``, ``job_state`` and ``cancel`` cannot find the job).

Repairs run one transaction per queue that re-reads the queue serializably (a concurrent
producer or consumer makes it retry, so a repair never undoes their work): undecodable
job records move raw to the dead letters, stray index entries are cleared and missing
ones written, the pointer is rewritten from the indexes, counters are set to the counts.
A job id in two places is reported, never guessed at. The walk is a check of a quiet
store: on a busy one it may report problems that were moments in flight (run it again).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from keyspace import layout
from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import (
    DEAD_LETTERS,
    POINTER_INDEX,
    POINTERS,
    QUEUE_LEASES,
    queue_keys,
)
from keyspace.protocol import Database, Transaction
from quick import pointers, queue_leases
from quick.counters import decode_count, encode_count
from quick.cron import decode_schedule
from quick.enqueueing import decode_moved
from quick.inspection import decode_dead_letter
from quick.jobs import COUNTED_STATES, Job, JobState, now_ms
from quick.limits import DEFAULT_QUEUE, decode_bucket, decode_limits
from quick.records import bury_corrupt
from quick.results import decode_result

__all__ = ["PAGE", "Problem", "Progress", "Report", "check_deep", "walk"]

#: Keys read per snapshot transaction of the walk.
PAGE = 1000
_UNREADABLE = (CorruptValue, ValueError, TypeError, KeyError, IndexError, struct.error)


@dataclass(frozen=True, slots=True)
class Problem:
    """One record that does not decode or one broken invariant, named by its key."""

    key: bytes
    kind: str
    detail: str
    repaired: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key.hex(),
            "what": layout.describe(self.key),
            "kind": self.kind,
            "detail": self.detail,
            "repaired": self.repaired,
        }


@dataclass(slots=True)
class Report:
    """What a deep check found; ``clean`` when nothing is left unrepaired."""

    keys: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return all(p.repaired for p in self.problems)


@dataclass(slots=True)
class _Queue:
    jobs: dict[str, Job] = field(default_factory=dict)
    corrupt: dict[str, str] = field(default_factory=dict)
    entries: dict[bytes, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    dead: int = 0
    pointer: dict[str, Any] | None = None
    index: list[bytes] = field(default_factory=list)


def walk(db: Database, begin: bytes, end: bytes, page: int = PAGE) -> Iterator[tuple[bytes, bytes]]:
    """Every pair in [begin, end), ``page`` keys per snapshot transaction."""

    def read(tr: Transaction, start: bytes) -> list[tuple[bytes, bytes]]:
        return tr.snapshot.get_range(start, end, limit=page)

    while True:
        rows = db.transact(read, begin)
        yield from rows
        if len(rows) < page:
            return
        begin = rows[-1][0] + b"\x00"


class _Model:
    """The keyspace as read by the walk, and the problems seen while reading it."""

    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = defaultdict(_Queue)
        self.places: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        #: Job id -> the queue its directory entry names.
        self.directory: dict[str, str] = {}
        #: (queue, job id, key) of the records of the queue being read, decoded or not.
        self.records: list[tuple[str, str, bytes]] = []
        #: The pointer-index entries the walk saw of each queue found broken (for repair).
        self.broken: dict[str, list[bytes]] = {}
        self.problems: list[Problem] = []
        self.keys = 0
        self._current: str | None = None  # the queue whose ("q", queue, ...) keys are read
        self._prefix = b""  # and the prefix of those keys

    def problem(self, key: bytes, kind: str, detail: str) -> None:
        self.problems.append(Problem(key, kind, detail))

    def add(self, key: bytes, value: bytes) -> None:
        self.keys += 1
        shape, _, fields = layout.decode(key)
        if self._current is not None and not key.startswith(self._prefix):
            self.finish_queue(self._current)
        if shape is None and POINTER_INDEX.contains(key):
            self.problem(key, "undecodable", "pointer-index key is not (vis_ms, queue)")
            return
        if shape is None:
            self.problem(key, "unknown key", "not one of the key shapes of keyspace.layout")
            return
        try:
            self._add(shape.pattern.split("/")[0], shape.pattern, key, value, fields)
        except _UNREADABLE as error:
            self.problem(key, "undecodable", str(error) or type(error).__name__)

    def _add(self, head: str, pattern: str, key: bytes, value: bytes, f: dict[str, Any]) -> None:
        if head == "ix":
            entry = pointers.unpack_index(key)
            if entry is None:
                raise ValueError("pointer-index key is not (vis_ms, queue)")
            self.queues[entry[1]].index.append(key)
        elif head == "ptr":
            self.queues[_text(f["queue"])].pointer = pointers.decode_pointer(value)
        elif head == "ql":
            queue_leases.decode_queue_lease(value)
        elif head == "dl":
            queue, job_id = _text(f["queue"]), _text(f["job_id"])
            decode_dead_letter(queue, job_id, value)
            self.queues[queue].dead += 1
            self.places[job_id].append(("dead letter", key))
        elif head == "id":
            entry = unpack_value(value)
            if not isinstance(entry, dict) or not isinstance(entry.get("q"), str):
                raise CorruptValue(f"directory entry of the wrong shape: {entry!r}")
            if entry.get("s") not in (None, "dead"):
                self.places[_text(f["job_id"])].append(("finished", key))
            self.directory[_text(f["job_id"])] = entry["q"]
        elif head == "res":
            _text(f["job_id"])
            decode_result(value)
        elif head == "cron":
            decode_schedule(_text(f["name"]), value)
        elif head == "lim":
            queue = f["queue"]
            decode_limits(DEFAULT_QUEUE if queue == DEFAULT_QUEUE else _text(queue), value)
        elif head == "rate":
            _text(f["queue"])
            decode_bucket(value)
        elif head == "moved":
            _text(f["queue"])
            decode_moved(value)
        elif head == "mig":
            Job.from_value(_text(f["queue"]), _text(f["job_id"]), value)
        elif head == "q":
            self._add_queue(pattern, key, value, f)

    def _add_queue(self, pattern: str, key: bytes, value: bytes, f: dict[str, Any]) -> None:
        name = _text(f["queue"])
        if name != self._current:
            self._current, self._prefix = name, layout.QUEUES.pack((name,))
        queue = self.queues[name]
        kind = pattern.split("/")[2]
        if kind == "j":
            job_id = _text(f["job_id"])
            self.places[job_id].append(("queue record", key))
            self.records.append((_text(f["queue"]), job_id, key))
            try:
                queue.jobs[job_id] = Job.from_value(f["queue"], job_id, value)
            except CorruptValue as error:
                queue.corrupt[job_id] = str(error)
                raise
        elif kind in ("r", "s"):
            ints = [f[n] for n in ("priority", "vis_ms") if n in f]
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ints):
                raise ValueError("index key fields are not integers")
            queue.entries[key] = _text(f["job_id"])
        elif kind == "n":
            queue.counters[_text(f["state"])] = decode_count(value)

    def finish_queue(self, name: str) -> None:
        """Check one queue whose keys have all been read, then forget its records.

        Keys sort by tag, and ``dl``, ``id``, ``ix`` and ``ptr`` sort before ``q``: when the
        walk leaves a queue's ``("q", queue, ...)`` keys it has read everything the queue's
        checks need, so the store's records are never all held at once."""
        if self._current == name:
            self._current = None
        q = self.queues.pop(name, None)
        if q is None:
            return
        if _check_queue(name, q, self.problems) or q.corrupt:
            self.broken[name] = q.index
        self.problems += _directory_problems(self.directory, self.records)
        self.records.clear()

    def finish(self) -> None:
        """Check the queues still unchecked (those with a pointer and no other key)."""
        for name in list(self.queues):
            self.finish_queue(name)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"key field {value!r} is not text")
    return value


def _check_queue(name: str, q: _Queue, problems: list[Problem]) -> bool:
    """Add the queue's broken invariants to ``problems``; True when it has any."""
    before = len(problems)
    keys = queue_keys(name)
    for key, job_id in q.entries.items():
        job = q.jobs.get(job_id)
        if job_id in q.corrupt:
            continue
        if job is None:
            problems.append(Problem(key, "index entry without record", f"job {job_id!r}"))
        elif job.index_key(keys) != key:
            problems.append(Problem(key, "index entry disagrees", f"record is {job.state}"))
    for job in q.jobs.values():
        if job.index_key(keys) not in q.entries:
            problems.append(Problem(keys.job(job.id), "record without index entry", job.state))
    counts = {s.value: 0 for s in COUNTED_STATES}
    for job in q.jobs.values():
        if job.state.value in counts:
            counts[job.state.value] += 1
    counts[JobState.DEAD.value] = q.dead
    for state, count in counts.items():
        if q.counters.get(state, 0) != count:
            detail = f"counter says {q.counters.get(state, 0)}, records say {count}"
            problems.append(Problem(keys.counter(state), "counter off", detail))
    has_work = bool(q.jobs or q.corrupt or q.entries)
    pointer_key = POINTERS.pack((name,))
    expected = None if q.pointer is None else POINTER_INDEX.pack((q.pointer["v"], name))
    if has_work and q.pointer is None:
        problems.append(Problem(pointer_key, "queue without pointer", "the queue holds jobs"))
    for key in q.index:
        if key != expected:
            problems.append(Problem(key, "stray pointer-index entry", "not its pointer's entry"))
    if expected is not None and expected not in q.index:
        problems.append(Problem(pointer_key, "pointer without index entry", "scanners miss it"))
    return len(problems) > before


#: What :func:`check_deep` tells its ``progress`` callback after each page: keys read so
#: far, and the last key read (where the walk is).
Progress = Callable[[int, bytes], None]


def check_deep(
    db: Database,
    *,
    repair: bool = False,
    progress: Progress | None = None,
    found: Callable[[Problem], None] | None = None,
) -> Report:
    """Walk the keyspace and report (and with ``repair``, fix) what is wrong; see module doc.

    Each queue is checked as soon as the walk has read its keys, and its records are then
    dropped: memory grows with the job directory, not with every record. ``progress``
    is called after every page of :data:`PAGE` keys; ``found`` with each problem as it is
    found (before any repair), so a caller can show them while a large store is walked.
    """
    model = _Model()
    shown = 0

    def tell() -> None:
        nonlocal shown
        if found is not None:
            for problem in model.problems[shown:]:
                found(problem)
        shown = len(model.problems)

    last = b""
    for key, value in walk(db, *layout.ROOT.range()):
        model.add(key, value)
        last = key
        if model.keys % PAGE == 0:
            tell()
            if progress is not None:
                progress(model.keys, key)
    model.finish()
    for job_id, places in model.places.items():
        if len(places) > 1:
            where = ", ".join(p for p, _ in places)
            model.problem(places[0][1], "job in two places", f"{job_id!r}: {where}")
    tell()
    if progress is not None:
        progress(model.keys, last)
    problems = model.problems
    if not repair:
        return Report(model.keys, problems)
    fixed = _repair(db, problems, model.broken)
    return Report(model.keys, [_mark(p, fixed) for p in problems])


def _directory_problems(
    directory: dict[str, str], records: list[tuple[str, str, bytes]]
) -> list[Problem]:
    """A queue record whose job has no directory entry, or one naming another queue."""
    found = []
    for queue, job_id, key in records:
        named = directory.get(job_id)
        if named is None:
            detail = f"job {job_id!r}: get_job, job_state and cancel cannot find it"
            found.append(Problem(key, "job without directory entry", detail))
        elif named != queue:
            detail = f"job {job_id!r}: the directory says queue {named!r}"
            found.append(Problem(key, "directory entry disagrees", detail))
    return found


def _mark(problem: Problem, fixed: set[bytes]) -> Problem:
    if problem.key not in fixed:
        return problem
    return Problem(problem.key, problem.kind, problem.detail, repaired=True)


def _repair(db: Database, problems: list[Problem], broken: dict[str, list[bytes]]) -> set[bytes]:
    """Fix what can be fixed (``broken``: each broken queue's pointer-index entries the
    walk saw); the keys of the problems that were."""
    fixed: set[bytes] = set()
    broken = dict(broken)
    for problem in problems:
        if problem.kind != "undecodable":
            continue
        shape, _, f = layout.decode(problem.key)
        head = None if shape is None else shape.pattern.split("/")[0]
        if head in ("q", "ptr", "ql") and isinstance(f.get("queue"), str):
            broken.setdefault(f["queue"], [])
        elif head == "ix" or POINTER_INDEX.contains(
            problem.key
        ):  # a pointer-index key that names no queue: nothing to lose
            db.transact(lambda tr, key=problem.key: tr.clear(key))
            fixed.add(problem.key)
    for name in sorted(broken):
        fixed |= db.transact(_repair_queue, name, broken[name], now_ms())
    return fixed


def _repair_queue(tr: Transaction, name: str, index: list[bytes], now: int) -> set[bytes]:
    """Make one queue consistent in ``tr``, losing no job; the keys it fixed."""
    keys = queue_keys(name)
    fixed: set[bytes] = set()
    jobs: dict[str, Job] = {}
    for key, value in tr.get_range(*keys.space["j"].range()):
        try:
            (job_id,) = keys.space["j"].unpack(key)
            jobs[job_id] = Job.from_value(name, job_id, value)
        except _UNREADABLE as error:
            _bury_raw(tr, name, key, value, str(error), now)
            fixed.add(key)
    for begin, end in (keys.ready_range(), keys.scheduled_range()):
        for key, _ in tr.get_range(begin, end):
            job_id = _entry_job(key)
            job = jobs.get(job_id) if job_id is not None else None
            if job is None or job.index_key(keys) != key:
                tr.clear(key)
                fixed.add(key)
    for job in jobs.values():
        tr.set(job.index_key(keys), b"")
        fixed.add(keys.job(job.id))
    counts = {s.value: 0 for s in COUNTED_STATES}
    for job in jobs.values():
        if job.state.value in counts:
            counts[job.state.value] += 1
    counts[JobState.DEAD.value] = len(tr.get_range(*DEAD_LETTERS[name].range()))
    fixed |= {key for key, _ in tr.get_range(*keys.counters_range())}
    tr.clear_range(*keys.counters_range())
    for state, count in counts.items():
        tr.set(keys.counter(state), encode_count(count))
        fixed.add(keys.counter(state))
    if _corrupt_lease(tr, name):
        tr.clear(QUEUE_LEASES.pack((name,)))
    pointers.refresh(tr, keys, now)
    pointer = pointers.read_pointer(tr, name)
    expected = None if pointer is None else POINTER_INDEX.pack((pointer["v"], name))
    for key in index:  # the entries the walk saw; refresh moved or kept the pointer's own
        if key != expected and tr.get(key) is not None:
            tr.clear(key)
        fixed.add(key)
    if expected is not None:
        tr.set(expected, b"")
    fixed |= {POINTERS.pack((name,)), QUEUE_LEASES.pack((name,))}
    return fixed


def _corrupt_lease(tr: Transaction, name: str) -> bool:
    data = tr.get(QUEUE_LEASES.pack((name,)))
    if data is None:
        return False
    try:
        queue_leases.decode_queue_lease(data)
    except CorruptValue:
        return True
    return False


def _entry_job(key: bytes) -> str | None:
    _, _, f = layout.decode(key)
    job_id = f.get("job_id")
    ints = [f[n] for n in ("priority", "vis_ms") if n in f]
    if not isinstance(job_id, str) or not all(isinstance(i, int) for i in ints):
        return None
    return job_id


def _bury_raw(tr: Transaction, queue: str, key: bytes, raw: bytes, error: str, now: int) -> None:
    """Move an undecodable job record to the dead letters as it is, with its error
    (the repair rebuilds the queue's index entries and counters afterwards)."""
    _, _, f = layout.decode(key)
    job_id = f.get("job_id")
    if not isinstance(job_id, str):
        job_id = key.hex()
    bury_corrupt(tr, queue_keys(queue), job_id, None, None, error, now, record_key=key, raw=raw)
