"""The stored state of runs and steps, and the statuses they move through.

A run record holds what never changes (workflow name, queue, input, definition) and
its status; each step has its own record, so steps of one run that finish at once
touch different keys and conflict only where they meet (a shared successor, or the
last sink deciding the run is done). Both are frozen values (:class:`RunRecord`,
:class:`StepRecord`) with ``to_value``/``from_value``, as :class:`quick.jobs.Job` is:
the short field names of the legend (:mod:`keyspace.layout`) appear only here, and a
record that does not decode, or decodes to the wrong shape, raises CorruptValue naming
its key. Fields at their default are left out of the stored form, so a step
transition rewrites only what its step has.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import WF_BY_STATUS, WF_INSTANCES, WF_RUNS, WF_STEPS
from keyspace.protocol import ReadView, Transaction
from quick.corruption import UNREADABLE, CorruptRecord
from quick.tracecontext import TraceContext, check_trace
from workflow.definition import Definition
from workflow.errors import CorruptRun, RunNotFound

__all__ = [
    "RunStatus",
    "StepStatus",
    "TERMINAL_RUN",
    "FINISHED_STEP",
    "RunRecord",
    "StepRecord",
    "read_run",
    "decode_run",
    "corrupt_run",
    "write_run",
    "set_run_status",
    "read_step",
    "run_key",
    "step_key",
    "read_steps",
    "write_step",
    "read_instance",
    "settled",
    "readiness",
    "read_instances",
]


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    WAITING = "waiting"  # dependencies not done, or an external step awaiting its signal
    SCHEDULED = "scheduled"  # a queue item exists (due now, later, or a retry)
    RUNNING = "running"  # a consumer leased its queue item
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


TERMINAL_RUN = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
FINISHED_STEP = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


def settled(step: StepRecord) -> bool:
    """Whether a step counts as done for what follows it: it succeeded, or a branch
    left it out."""
    return step.status == StepStatus.SUCCEEDED or (
        step.pruned and step.status == StepStatus.SKIPPED
    )


def readiness(dependencies: Iterable[StepRecord]) -> str:
    """What a waiting step does given its dependencies' records (pure): ``"run"`` when
    each is settled and at least one succeeded (or it has none), ``"prune"`` when a
    branch left out every one, ``"wait"`` otherwise. Stops at the first dependency not
    settled (so a lazy iterable reads no further, as a join's completion should)."""
    pruned = found = 0
    for dependency in dependencies:
        if not settled(dependency):
            return "wait"
        found += 1
        pruned += dependency.pruned
    return "prune" if found and pruned == found else "run"


_NONE = type(None)
_ANY = (object,)
_TEXT = (str,)
_INT = (int,)
_MAYBE_TEXT = (str, _NONE)
_MAYBE_INT = (int, _NONE)


def _checked(
    what: str, data: bytes, types: dict[str, tuple[type, ...]], required: tuple[str, ...]
) -> dict[str, Any]:
    """The decoded map, each present field of its type (``required`` ones present);
    CorruptValue naming ``what`` otherwise. msgpack decodes whatever was stored, so a
    record is checked before any field is trusted."""
    record = unpack_value(data)
    if not isinstance(record, dict):
        raise CorruptValue(f"{what} is a {type(record).__name__}, not a map")
    for name in required:
        if name not in record:
            raise CorruptValue(f"{what} is malformed: field {name!r} is missing")
    for name, value in record.items():
        kinds = types.get(name, _ANY)
        if kinds is _ANY:
            continue
        if not isinstance(value, kinds) or (value.__class__ is bool and bool not in kinds):
            raise CorruptValue(f"{what} is malformed: field {name!r} is {value!r}")
    return record


def _status(what: str, kind: type[StrEnum], value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise CorruptValue(f"{what} is malformed: {value!r} is no {kind.__name__}") from None


#: The type of each run field (``i``, the input, may be anything).
_RUN_TYPES: dict[str, tuple[type, ...]] = {
    "w": _TEXT,
    "rs": _TEXT,
    "q": _TEXT,
    "i": _ANY,
    "df": (list,),
    "c": _INT,
    "f": _MAYBE_INT,
    "ik": _MAYBE_TEXT,
    "h": (list, _NONE),
    "why": _MAYBE_TEXT,
    "rt": _MAYBE_TEXT,
    "pa": (list, _NONE),
    "tc": (dict, _NONE),
}
_RUN_REQUIRED = ("w", "rs", "q", "i", "df", "c")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """A run as stored at ``("wf", "run", id)``."""

    id: str
    workflow: str
    status: RunStatus
    queue: str
    input: Any
    #: The workflow definition in its stored form (:meth:`decode_definition` decodes it).
    definition: list[Any]
    created_ms: int
    finished_ms: int | None = None
    idempotency_key: str | None = None
    #: Hook kinds the workflow had when the run started.
    hooks: tuple[str, ...] = ()
    #: Why it ended, in words (a failed run).
    reason: str | None = None
    #: The id of the ``retry_run`` call last applied.
    retry_id: str | None = None
    #: A child run: the parent run's id and the child step's key.
    parent: tuple[str, str] | None = None
    #: The W3C trace context the run started in; its steps' items carry it.
    trace: TraceContext | None = None

    def to_value(self) -> bytes:
        """The stored form (TypeError when the input is not msgpack-encodable)."""
        record: dict[str, Any] = {
            "w": self.workflow,
            "rs": self.status.value,
            "q": self.queue,
            "i": self.input,
            "df": self.definition,
            "c": self.created_ms,
            "f": self.finished_ms,
            "ik": self.idempotency_key,
            "h": list(self.hooks),
        }
        if self.reason is not None:
            record["why"] = self.reason
        if self.retry_id is not None:
            record["rt"] = self.retry_id
        if self.parent is not None:
            record["pa"] = list(self.parent)
        if self.trace:
            record["tc"] = self.trace
        return pack_value(record)

    @classmethod
    def from_value(cls, run_id: str, data: bytes) -> RunRecord:
        """Decode a stored run; CorruptValue naming the run when it is not one."""
        what = f"run record {run_id!r}"
        record = _checked(what, data, _RUN_TYPES, _RUN_REQUIRED)
        hooks = record.get("h") or ()
        if not all(isinstance(kind, str) for kind in hooks):
            raise CorruptValue(f"{what} is malformed: field 'h' is {hooks!r}")
        parent = record.get("pa")
        if parent is not None and (
            len(parent) != 2 or not all(isinstance(part, str) for part in parent)
        ):
            raise CorruptValue(f"{what} is malformed: field 'pa' is {parent!r}")
        return cls(
            id=run_id,
            workflow=record["w"],
            status=_status(what, RunStatus, record["rs"]),
            queue=record["q"],
            input=record["i"],
            definition=record["df"],
            created_ms=record["c"],
            finished_ms=record.get("f"),
            idempotency_key=record.get("ik"),
            hooks=tuple(hooks),
            reason=record.get("why"),
            retry_id=record.get("rt"),
            parent=None if parent is None else (parent[0], parent[1]),
            trace=_trace(what, record.get("tc")),
        )

    def decode_definition(self) -> Definition:
        """The run's definition; CorruptValue naming the run when it does not decode."""
        try:
            return Definition.from_record(self.workflow, self.definition)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CorruptValue(
                f"run record {self.id!r} is malformed: its definition does not decode: {error!r}"
            ) from error

    def evolve(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)


def _trace(what: str, value: Any) -> TraceContext | None:
    try:
        return check_trace(value)
    except ValueError as error:
        raise CorruptValue(f"{what} is malformed: {error}") from None


#: The type of each step field (``out`` and ``g``, an output and a payload, may be anything).
_STEP_TYPES: dict[str, tuple[type, ...]] = {
    "ss": _TEXT,
    "a": _INT,
    "ra": _INT,
    "m": _MAYBE_INT,
    "j": _MAYBE_TEXT,
    "n": _MAYBE_INT,
    "st": _MAYBE_INT,
    "f": _MAYBE_INT,
    "out": _ANY,
    "e": _MAYBE_TEXT,
    "why": _MAYBE_TEXT,
    "g": _ANY,
    "gi": _MAYBE_TEXT,
    "aw": (bool,),
    "pn": (bool,),
    "ch": _MAYBE_TEXT,
    "mn": _MAYBE_INT,
    "md": _INT,
    "mb": _INT,
}
_STEP_REQUIRED = ("ss",)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    """A step's state as stored at ``("wf", "step", run_id, key)``; a step never written
    is :meth:`waiting`."""

    run_id: str
    key: str
    status: StepStatus = StepStatus.WAITING
    #: Claims of the step's jobs so far.
    attempts: int = 0
    #: Claims counted toward the attempt limit (a run retry resets them).
    counted: int = 0
    #: The attempt limit the last attempt ran under (None: the handler's or default one).
    max_attempts: int | None = None
    #: The job that currently stands for the step.
    job_id: str | None = None
    #: When next due: a scheduled item's due or retry time.
    due_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    output: Any = None
    error: str | None = None
    #: Why it ended, in words (a skipped or cancelled step).
    reason: str | None = None
    #: True once an external step received its signal (whose payload may be None).
    signalled: bool = False
    signal: Any = None
    #: The id of the ``signal`` call that delivered ``signal``.
    signal_id: str | None = None
    #: True once an external step is waiting for its signal.
    awaiting: bool = False
    #: True when a branch left the step out (skipped, but the run goes on without it).
    pruned: bool = False
    #: A child step: the id of the child run that stands for it now.
    child_run: str | None = None
    #: A map step: how many instances it has (None until its list is known), how many
    #: succeeded, and the encoded size of their outputs.
    count: int | None = None
    done: int = 0
    out_bytes: int = 0
    #: A map instance's index (in its key, not its value; None for a step).
    index: int | None = None

    @classmethod
    def waiting(cls, run_id: str, key: str) -> StepRecord:
        """The state of a step that has no record yet."""
        return cls(run_id=run_id, key=key)

    def to_value(self) -> bytes:
        """The stored form (TypeError when the output or signal is not msgpack-encodable)."""
        record: dict[str, Any] = {"ss": self.status.value, "a": self.attempts}
        optional = {
            "ra": self.counted or None,
            "m": self.max_attempts,
            "j": self.job_id,
            "n": self.due_ms,
            "st": self.started_ms,
            "f": self.finished_ms,
            "out": self.output,
            "e": self.error,
            "why": self.reason,
            "ch": self.child_run,
            "mn": self.count,
            "md": self.done or None,
            "mb": self.out_bytes or None,
        }
        record.update((name, value) for name, value in optional.items() if value is not None)
        if self.signalled:
            record["g"] = self.signal
            record["gi"] = self.signal_id
        if self.awaiting:
            record["aw"] = True
        if self.pruned:
            record["pn"] = True
        return pack_value(record)

    @classmethod
    def from_value(cls, run_id: str, key: str, data: bytes, index: int | None = None) -> StepRecord:
        """Decode a stored step (or map instance); CorruptValue naming it when it is not one."""
        what = f"step record {key!r} of run {run_id!r}"
        if index is not None:
            what = f"instance {index} of step {key!r} of run {run_id!r}"
        record = _checked(what, data, _STEP_TYPES, _STEP_REQUIRED)
        return cls(
            run_id=run_id,
            key=key,
            status=_status(what, StepStatus, record["ss"]),
            attempts=record.get("a", 0),
            counted=record.get("ra", 0),
            max_attempts=record.get("m"),
            job_id=record.get("j"),
            due_ms=record.get("n"),
            started_ms=record.get("st"),
            finished_ms=record.get("f"),
            output=record.get("out"),
            error=record.get("e"),
            reason=record.get("why"),
            signalled="g" in record,
            signal=record.get("g"),
            signal_id=record.get("gi"),
            awaiting=record.get("aw", False),
            pruned=record.get("pn", False),
            child_run=record.get("ch"),
            count=record.get("mn"),
            done=record.get("md", 0),
            out_bytes=record.get("mb", 0),
            index=index,
        )

    def evolve(self, **changes: Any) -> StepRecord:
        return dataclasses.replace(self, **changes)


@functools.lru_cache(maxsize=1 << 16)
def run_key(run_id: str) -> bytes:
    """The key of a run's record (kept: every claim and settlement of its steps reads it)."""
    return WF_RUNS.pack((run_id,))


@functools.lru_cache(maxsize=1 << 16)
def step_key(run_id: str, step: str) -> bytes:
    """The key of a step's record (kept: each of its transitions reads and writes it)."""
    return WF_STEPS.pack((run_id, step))


def read_run(view: ReadView, run_id: str) -> RunRecord:
    """The run record; RunNotFound when there is none, CorruptRun when it is not a run."""
    data = view.get(run_key(run_id))
    if data is None:
        raise RunNotFound(run_id)
    return decode_run(run_id, data)


#: Decoded run records by (run id, stored bytes): a run's record changes only when its
#: status does, yet every step's claim and settlement reads it, and decoding it (the
#: definition and input included) was most of what loading a run cost. Keyed by the
#: bytes, so a record rewritten in any way (a corrupt one too) is decoded afresh.
_RUNS: dict[tuple[str, bytes], RunRecord] = {}
#: Entries and bytes of records :data:`_RUNS` keeps at most (the oldest go first).
_RUNS_KEPT = 4096
_RUNS_BYTES = 16_000_000
_runs_bytes = 0
_runs_lock = threading.Lock()


def decode_run(run_id: str, data: bytes) -> RunRecord:
    """The run record stored as ``data``.

    Raises:
        CorruptRun: naming the record's key, when ``data`` is not a run record.
    """
    global _runs_bytes
    found = _RUNS.get((run_id, data))
    if found is not None:
        return found
    try:
        found = RunRecord.from_value(run_id, data)
    except UNREADABLE as error:
        raise corrupt_run(run_id, WF_RUNS.pack((run_id,)), error) from None
    with _runs_lock:  # lanes are threads
        while _RUNS and (len(_RUNS) >= _RUNS_KEPT or _runs_bytes + len(data) > _RUNS_BYTES):
            oldest = next(iter(_RUNS))
            del _RUNS[oldest]
            _runs_bytes -= len(oldest[1])
        if (run_id, data) not in _RUNS:
            _RUNS[run_id, data] = found
            _runs_bytes += len(data)
    return found


def corrupt_run(run_id: str, key: bytes, error: Exception) -> CorruptRun:
    """The CorruptRun for ``error``, raised reading the record at ``key`` of run ``run_id``."""
    record = CorruptRecord.of(key, error)
    return CorruptRun(run_id, key, record.where, record.error)


def write_run(tr: Transaction, run: RunRecord) -> None:
    tr.set(WF_RUNS.pack((run.id,)), run.to_value())


def set_run_status(tr: Transaction, run: RunRecord, status: RunStatus) -> RunRecord:
    """Move the run to ``status``, keeping the by-status index in step; the record written."""
    tr.clear(WF_BY_STATUS.pack((run.status.value, run.workflow, run.id)))
    tr.set(WF_BY_STATUS.pack((status.value, run.workflow, run.id)), b"")
    moved = run.evolve(status=status)
    write_run(tr, moved)
    return moved


def read_step(view: ReadView, run_id: str, step: str) -> StepRecord:
    """The step's record (waiting when none is stored); CorruptRun when it does not decode."""
    key = step_key(run_id, step)
    data = view.get(key)
    if data is None:
        return StepRecord.waiting(run_id, step)
    return _decode_step(run_id, step, key, data)


def read_steps(view: ReadView, run_id: str) -> dict[str, StepRecord]:
    """Every step record of the run that has been written, by step key."""
    out = {}
    for key, value in view.get_range(*WF_STEPS.range((run_id,))):
        _, step = WF_STEPS.unpack(key)
        out[step] = _decode_step(run_id, step, key, value)
    return out


def _decode_step(
    run_id: str, step: str, key: bytes, data: bytes, index: int | None = None
) -> StepRecord:
    try:
        return StepRecord.from_value(run_id, step, data, index)
    except UNREADABLE as error:
        raise corrupt_run(run_id, key, error) from None


def write_step(tr: Transaction, step: StepRecord) -> None:
    if step.index is not None:
        tr.set(WF_INSTANCES.pack((step.run_id, step.key, step.index)), step.to_value())
    else:
        tr.set(step_key(step.run_id, step.key), step.to_value())


def read_instance(view: ReadView, run_id: str, step: str, index: int) -> StepRecord:
    """Instance ``index`` of map step ``step`` (waiting when none is stored)."""
    key = WF_INSTANCES.pack((run_id, step, index))
    data = view.get(key)
    if data is None:
        return StepRecord(run_id=run_id, key=step, index=index)
    return _decode_step(run_id, step, key, data, index)


def read_instances(
    view: ReadView, run_id: str, step: str, start: int = 0, stop: int | None = None
) -> list[StepRecord]:
    """The stored instances of map step ``step`` with ``start <= index < stop``, in
    index order (``stop`` None: to the last; an instance never scheduled has no record)."""
    begin = WF_INSTANCES.pack((run_id, step, start))
    if stop is None:
        _, end = WF_INSTANCES.range((run_id, step))
    else:
        end = WF_INSTANCES.pack((run_id, step, stop))
    out = []
    for key, value in view.get_range(begin, end):
        index = WF_INSTANCES.unpack(key)[2]
        if not isinstance(index, int):
            raise corrupt_run(run_id, key, ValueError(f"instance index {index!r}"))
        out.append(_decode_step(run_id, step, key, value, index))
    return out
