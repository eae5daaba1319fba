"""Every key quick stores: one root, named subspaces, and a decoder back into words.

All keys are ``fdb.tuple``-packed under the root tuple ``("qk",)``, so a quick
keyspace can share a cluster with other data and be cleared or inspected as a
whole. Times are integer milliseconds since the epoch; tags are short strings.
Values are :mod:`keyspace.codec` records unless the table says otherwise.

=================================================  ===============================================
key (after the root ``("qk",)``)                   value
=================================================  ===============================================
``("meta", name)``                                 store metadata (e.g. the layout format)
``("ix", vis_ms, queue)``                          empty; pointer index: ``queue`` may have work
                                                   visible from ``vis_ms`` (exactly one per queue)
``("ptr", queue)``                                 pointer record: ``vis_ms``, empty-since time
``("wake",)``                                      little-endian counter, bumped whenever the
                                                   pointer index gains earlier work; idle
                                                   consumers watch it
``("ql", queue)``                                  queue lease: owner, lease expiry
``("q", queue, "j", job_id)``                      job record: topic, payload, priority, state,
                                                   attempt, lease owner/token/expiry, last error
``("q", queue, "r", priority, vis_ms, job_id)``    empty; ready index (visible jobs, best first)
``("q", queue, "s", vis_ms, job_id)``              empty; scheduled index (future and leased
                                                   jobs, by the time they become visible)
``("q", queue, "n", state)``                       little-endian int64 counter (atomic add)
``("q", queue, "u", unique_key)``                  job id holding the unique key
``("dl", queue, job_id)``                          dead letter: the job record and last error
``("id", job_id)``                                 job directory: queue, and the outcome once
                                                   finished (kept for the retention window)
``("done", done_ms, job_id)``                      empty; finished jobs by time, for purging
``("cron", name)``                                 cron schedule: expression, target, next run
``("lim", queue)``                                 queue limits (``queue`` ``"*"``: the default
                                                   of queues without their own): ``r`` most
                                                   jobs leased at once, ``s`` most started per
                                                   second (either None = no limit)
``("rate", queue)``                                token bucket of a rate-limited queue: ``t``
                                                   tokens (float), ``at`` last refill time ms
``("cron_at", next_ms, name)``                     empty; schedules by next run, for activation
``("wf", "run", run_id)``                          workflow run: name, status, queue, input,
                                                   definition, times
``("wf", "step", run_id, step)``                   step state: status, attempts, job, output,
                                                   error, signal
``("wf", "j", run_id, versionstamp)``              journal event of the run, in commit order
``("wf", "idem", workflow, key)``                  run id started with this idempotency key
``("wf", "ix", status, workflow, run_id)``         empty; runs by status, for listing
``("moved", queue)``                               the queue moved to another store: its
                                                   URL (``to``) and when (``at``); enqueues
                                                   here raise QueueMoved
``("mig", queue, job_id)``                         a job being moved in by ``quick migrate``:
                                                   its record, unseen by consumers until the
                                                   source has deleted it
=================================================  ===============================================

:func:`describe` turns any stored key into one readable line, for ``quick inspect
keyspace``; keys outside these shapes are shown as their raw tuple or bytes.
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass
from typing import Any

import fdb.tuple as fdbtuple

from keyspace.subspace import Subspace

__all__ = [
    "ROOT",
    "POINTER_INDEX",
    "POINTERS",
    "QUEUE_LEASES",
    "WAKE",
    "DEAD_LETTERS",
    "JOB_DIRECTORY",
    "FINISHED",
    "CRON",
    "CRON_DUE",
    "LIMITS",
    "RATES",
    "WF_RUNS",
    "WF_STEPS",
    "WF_JOURNAL",
    "WF_IDEMPOTENCY",
    "WF_BY_STATUS",
    "MOVED",
    "MIGRATING",
    "QueueKeys",
    "queue_keys",
    "Shape",
    "SHAPES",
    "describe",
    "decode",
]

ROOT = Subspace(("qk",))
POINTER_INDEX = ROOT["ix"]
POINTERS = ROOT["ptr"]
QUEUE_LEASES = ROOT["ql"]
WAKE = ROOT.pack(("wake",))
DEAD_LETTERS = ROOT["dl"]
JOB_DIRECTORY = ROOT["id"]
FINISHED = ROOT["done"]
CRON = ROOT["cron"]
CRON_DUE = ROOT["cron_at"]
LIMITS = ROOT["lim"]
RATES = ROOT["rate"]
QUEUES = ROOT["q"]
WF_RUNS = ROOT["wf"]["run"]
WF_STEPS = ROOT["wf"]["step"]
WF_JOURNAL = ROOT["wf"]["j"]
WF_IDEMPOTENCY = ROOT["wf"]["idem"]
WF_BY_STATUS = ROOT["wf"]["ix"]
MOVED = ROOT["moved"]
MIGRATING = ROOT["mig"]


class QueueKeys:
    """The keys of one queue's range: its jobs, indexes, counters and unique keys.

    Build them with :func:`queue_keys`, which caches one per queue name.
    """

    __slots__ = ("queue", "space", "_jobs", "_ready", "_sched", "_counters", "_unique")

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.space = QUEUES[queue]
        self._jobs = self.space["j"]
        self._ready = self.space["r"]
        self._sched = self.space["s"]
        self._counters = self.space["n"]
        self._unique = self.space["u"]

    def job(self, job_id: str) -> bytes:
        return self._jobs.pack((job_id,))

    def ready(self, priority: int, vis_ms: int, job_id: str) -> bytes:
        return self._ready.pack((priority, vis_ms, job_id))

    def ready_range(self) -> tuple[bytes, bytes]:
        return self._ready.range()

    def unpack_ready(self, key: bytes) -> tuple[int, int, str]:
        priority, vis_ms, job_id = self._ready.unpack(key)
        return priority, vis_ms, job_id

    def scheduled(self, vis_ms: int, job_id: str) -> bytes:
        return self._sched.pack((vis_ms, job_id))

    def scheduled_range(self, until_ms: int | None = None) -> tuple[bytes, bytes]:
        """Scheduled entries, or only those visible at or before ``until_ms``."""
        begin, end = self._sched.range()
        if until_ms is not None:
            end = self._sched.pack((until_ms + 1,))
        return begin, end

    def unpack_scheduled(self, key: bytes) -> tuple[int, str]:
        vis_ms, job_id = self._sched.unpack(key)
        return vis_ms, job_id

    def counter(self, state: str) -> bytes:
        return _counter_key(self._counters.raw, state)

    def counters_range(self) -> tuple[bytes, bytes]:
        return self._counters.range()

    def unique(self, unique_key: str) -> bytes:
        return self._unique.pack((unique_key,))


@functools.lru_cache(maxsize=16384)
def _counter_key(prefix: bytes, state: str) -> bytes:
    return Subspace((state,), prefix).raw


@functools.lru_cache(maxsize=4096)
def queue_keys(queue: str) -> QueueKeys:
    """The (cached) keys of ``queue``."""
    return QueueKeys(queue)


@dataclass(frozen=True, slots=True)
class Shape:
    """One key shape: literal tags and named fields, e.g. ``q/{queue}/j/{job_id}``."""

    pattern: str
    meaning: str

    @property
    def parts(self) -> list[str]:
        return self.pattern.split("/")

    def match(self, items: tuple[Any, ...]) -> dict[str, Any] | None:
        parts = self.parts
        if len(parts) != len(items):
            return None
        fields: dict[str, Any] = {}
        for part, item in zip(parts, items, strict=True):
            if part.startswith("{"):
                fields[part[1:-1]] = item
            elif part != item:
                return None
        return fields


SHAPES: tuple[Shape, ...] = (
    Shape("meta/{name}", "store metadata"),
    Shape("ix/{vis_ms}/{queue}", "pointer index entry"),
    Shape("ptr/{queue}", "queue pointer"),
    Shape("ql/{queue}", "queue lease"),
    Shape("wake", "wake-up counter"),
    Shape("q/{queue}/j/{job_id}", "job"),
    Shape("q/{queue}/r/{priority}/{vis_ms}/{job_id}", "ready job"),
    Shape("q/{queue}/s/{vis_ms}/{job_id}", "scheduled or leased job"),
    Shape("q/{queue}/n/{state}", "queue counter"),
    Shape("q/{queue}/u/{unique_key}", "unique key reservation"),
    Shape("dl/{queue}/{job_id}", "dead letter"),
    Shape("id/{job_id}", "job directory"),
    Shape("done/{done_ms}/{job_id}", "finished job"),
    Shape("cron/{name}", "cron schedule"),
    Shape("cron_at/{next_ms}/{name}", "cron schedule due"),
    Shape("lim/{queue}", "queue limits"),
    Shape("rate/{queue}", "queue rate bucket"),
    Shape("wf/run/{run_id}", "workflow run"),
    Shape("wf/step/{run_id}/{step}", "workflow step"),
    Shape("wf/j/{run_id}/{versionstamp}", "workflow journal event"),
    Shape("wf/idem/{workflow}/{key}", "workflow idempotency key"),
    Shape("wf/ix/{status}/{workflow}/{run_id}", "workflow run by status"),
    Shape("moved/{queue}", "queue moved away"),
    Shape("mig/{queue}/{job_id}", "job being migrated in"),
)


def decode(key: bytes) -> tuple[Shape | None, tuple[Any, ...] | None, dict[str, Any]]:
    """(shape, tuple after the root, fields) for ``key``; Nones where it does not parse."""
    if not ROOT.contains(key):
        return None, None, {}
    try:
        items = ROOT.unpack(key)
    except ValueError:
        return None, None, {}
    for shape in SHAPES:
        fields = shape.match(items)
        if fields is not None:
            return shape, items, fields
    return None, items, {}


def _show(name: str, value: Any) -> str:
    if name.endswith("_ms") and isinstance(value, int):
        when = _dt.datetime.fromtimestamp(value / 1000, tz=_dt.UTC)
        return f"{name}={value} ({when.isoformat(timespec='milliseconds')})"
    return f"{name}={value!r}"


def describe(key: bytes) -> str:
    """One line saying what ``key`` is, e.g. ``job  queue='t1' job_id='...'``."""
    shape, items, fields = decode(key)
    if shape is not None:
        return "  ".join([shape.meaning] + [_show(k, v) for k, v in fields.items()])
    if items is not None:
        return f"unknown quick key {items!r}"
    try:
        return f"foreign key {tuple(fdbtuple.unpack(key))!r}"
    except Exception:
        return f"foreign key {key!r}"
