"""Job values: the stored job record, its states, and the Claim a consumer holds.

A job record lives at ``("q", queue, "j", job_id)`` (see :mod:`keyspace.layout`) and
is stored through the msgpack codec with short field names. Its ``state`` says which
index entry accompanies it: ``ready`` jobs sit in the ready index under
``(priority, vis_ms, job_id)``; ``scheduled`` and ``leased`` jobs sit in the scheduled
index under ``(vis_ms, job_id)``, where a leased job's ``vis_ms`` is its lease expiry,
so an expired lease makes the job visible again with no reaper.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import QueueKeys
from quick.progress import Progress
from quick.tracecontext import TraceContext, check_trace

__all__ = [
    "JobState",
    "Job",
    "Claim",
    "now_ms",
    "COUNTED_STATES",
    "DEFAULT_PRIORITY",
    "DEFAULT_LEASE_MS",
]

#: The priority of a job enqueued without one (lower runs first).
DEFAULT_PRIORITY = 100
#: How long a claim holds its job unless the claimer asks otherwise; a running job's
#: lease is extended, so this bounds only how long a dead consumer's jobs stay hidden.
DEFAULT_LEASE_MS = 30_000


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch: the queue's only clock."""
    return time.time_ns() // 1_000_000


class JobState(StrEnum):
    """Where a job is in its life."""

    SCHEDULED = "scheduled"
    READY = "ready"
    LEASED = "leased"
    DEAD = "dead"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"
    #: Moved to another store by ``quick migrate`` (a tombstone on the source only).
    MOVED = "moved"
    #: Held back until its dependencies complete (:mod:`quick.dependencies`); not yet
    #: on its queue.
    WAITING = "waiting"


#: States with a per-queue atomic counter.
COUNTED_STATES = (JobState.SCHEDULED, JobState.READY, JobState.LEASED, JobState.DEAD)


_NONE = type(None)
#: The type each stored job field must have (``p``, the payload, may be anything).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "t": (str,),
    "pr": (int,),
    "v": (int,),
    "s": (str,),
    "a": (int,),
    "m": (int, _NONE),
    "c": (int,),
    "o": (str, _NONE),
    "k": (str, _NONE),
    "e": (str, _NONE),
    "u": (str, _NONE),
    "x": (dict, _NONE),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job as stored in its queue."""

    id: str
    queue: str
    topic: str
    payload: Any
    priority: int
    vis_ms: int
    state: JobState
    attempt: int = 0
    max_attempts: int | None = None
    created_ms: int = 0
    owner: str | None = None
    token: str | None = None
    last_error: str | None = None
    unique_key: str | None = None
    #: Data for a job extension (see :mod:`quick.extensions`), e.g. a workflow step's run.
    extension: dict[str, Any] | None = None
    #: Keyed limits the job counts against (:mod:`quick.key_limits`); stored only when set.
    limit_keys: tuple[str, ...] = ()
    #: ``quick.cancel`` asked the running job to stop (set only on a leased job).
    cancel_requested: bool = False
    #: What its running handler last recorded (written by the worker's lease keeper).
    progress: Progress | None = None
    #: The W3C trace context it was enqueued in (:mod:`quick.tracecontext`), if any.
    trace: TraceContext | None = None
    #: The batch this job is a member of (:mod:`quick.batches`); stored only when set.
    batch: str | None = None
    #: Other jobs wait for this one (:mod:`quick.dependencies`); stored only when true.
    has_dependents: bool = False

    def to_value(self) -> bytes:
        """The stored form (TypeError when the payload is not msgpack-encodable).

        ``cx`` (the cancel mark), ``pg`` (progress) and ``tc`` (trace context) are left
        out unless set, so a record that uses none is as small as before they existed.
        """
        record: dict[str, Any] = {
            "t": self.topic,
            "p": self.payload,
            "pr": self.priority,
            "v": self.vis_ms,
            "s": self.state.value,
            "a": self.attempt,
            "m": self.max_attempts,
            "c": self.created_ms,
            "o": self.owner,
            "k": self.token,
            "e": self.last_error,
            "u": self.unique_key,
            "x": self.extension,
        }
        if self.limit_keys:
            record["lk"] = list(self.limit_keys)
        if self.trace:  # omitted when absent: old records decode, untraced ones stay small
            record["tc"] = self.trace
        if self.batch is not None:
            record["b"] = self.batch
        if self.has_dependents:
            record["dn"] = True
        if self.cancel_requested:
            record["cx"] = True
        if self.progress is not None:
            record["pg"] = self.progress.to_stored()
        return pack_value(record)

    @classmethod
    def from_value(cls, queue: str, job_id: str, data: bytes) -> Job:
        """Decode a stored record; CorruptValue when it is not one, or a field has the
        wrong type (msgpack decodes whatever was stored, so each field is checked)."""
        record = unpack_value(data)
        if not isinstance(record, dict):
            raise CorruptValue(f"job record {job_id!r} is a {type(record).__name__}, not a map")
        try:
            for name, kinds in _FIELD_TYPES.items():
                value = record[name] if name != "x" else record.get(name)
                if not isinstance(value, kinds) or isinstance(value, bool):
                    raise TypeError(f"field {name!r} is {value!r}")
            limit_keys = record.get("lk")
            if limit_keys is None:  # stored only when the job names keys
                limit_keys = ()
            elif not isinstance(limit_keys, list) or not all(
                isinstance(key, str) for key in limit_keys
            ):
                raise TypeError(f"field 'lk' is {limit_keys!r}")
            batch, dependents = record.get("b"), record.get("dn", False)
            if not isinstance(batch, str | None) or not isinstance(dependents, bool):
                raise TypeError(f"field 'b' or 'dn' is {batch!r}, {dependents!r}")
            cancel = record.get("cx", False)
            if not isinstance(cancel, bool):
                raise TypeError(f"field 'cx' is {cancel!r}")
            stored_progress = record.get("pg")
            progress = None if stored_progress is None else Progress.from_stored(stored_progress)
            return cls(
                id=job_id,
                queue=queue,
                topic=record["t"],
                payload=record["p"],
                priority=record["pr"],
                vis_ms=record["v"],
                state=JobState(record["s"]),
                attempt=record["a"],
                max_attempts=record["m"],
                created_ms=record["c"],
                owner=record["o"],
                token=record["k"],
                last_error=record["e"],
                unique_key=record["u"],
                extension=record.get("x"),
                limit_keys=tuple(limit_keys) if limit_keys else (),
                cancel_requested=cancel,
                progress=progress,
                trace=check_trace(record.get("tc")),
                batch=batch,
                has_dependents=dependents,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptValue(f"job record {job_id!r} is malformed: {error!r}") from error

    def index_key(self, keys: QueueKeys) -> bytes:
        """The ready- or scheduled-index entry that accompanies this record."""
        if self.state is JobState.READY:
            return keys.ready(self.priority, self.vis_ms, self.id)
        return keys.scheduled(self.vis_ms, self.id)

    def evolve(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    def visible_state(self, now: int) -> JobState:
        """The state a reader sees at ``now``: due scheduled jobs and expired leases are ready."""
        if self.state is not JobState.READY and self.vis_ms <= now:
            return JobState.READY
        return self.state


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A leased job, as handed to a consumer; ``token`` fences every later call."""

    job_id: str
    queue_id: str
    topic: str
    payload: Any
    attempt: int
    owner: str
    lease_until_ms: int
    token: str
    priority: int = DEFAULT_PRIORITY
    max_attempts: int | None = None
    enqueued_ms: int = 0
    extension: dict[str, Any] | None = None
    #: ``quick.cancel`` asked the job to stop: a runtime holding this claim stops its
    #: handler (or never starts it), and settling it finishes the job as cancelled.
    cancel_requested: bool = False
    trace: TraceContext | None = None

    @classmethod
    def of(cls, job: Job) -> Claim:
        assert job.owner is not None
        assert job.token is not None
        return cls(
            job_id=job.id,
            queue_id=job.queue,
            topic=job.topic,
            payload=job.payload,
            attempt=job.attempt,
            owner=job.owner,
            lease_until_ms=job.vis_ms,
            token=job.token,
            priority=job.priority,
            max_attempts=job.max_attempts,
            enqueued_ms=job.created_ms,
            extension=job.extension,
            cancel_requested=job.cancel_requested,
            trace=job.trace,
        )

    def __post_init__(self) -> None:
        if not self.token:
            raise CorruptValue("a claim needs its lease token")
