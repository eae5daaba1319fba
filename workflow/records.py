"""The stored state of runs and steps, and the statuses they move through.

A run record holds what never changes (workflow name, queue, input, definition) and
its status; each step has its own record, so steps of one run that finish at once
touch different keys and conflict only where they meet (a shared successor, or the
last sink deciding the run is done). Records are plain dicts through the keyspace
codec; the field names are short because every step transition rewrites one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import WF_BY_STATUS, WF_RUNS, WF_STEPS
from keyspace.protocol import ReadView, Transaction
from quick.corruption import UNREADABLE, CorruptRecord
from workflow.errors import CorruptRun, RunNotFound

__all__ = [
    "RunStatus",
    "StepStatus",
    "TERMINAL_RUN",
    "FINISHED_STEP",
    "read_run",
    "decode_run",
    "corrupt_run",
    "write_run",
    "set_run_status",
    "read_step",
    "read_steps",
    "write_step",
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


#: The fields every run record has, and their types (``i``, the input, may be anything).
RUN_FIELDS: dict[str, type] = {"w": str, "rs": str, "q": str, "c": int, "df": list}


def read_run(view: ReadView, run_id: str) -> dict[str, Any]:
    """The run record; RunNotFound when there is none, CorruptRun when it is not a run."""
    data = view.get(WF_RUNS.pack((run_id,)))
    if data is None:
        raise RunNotFound(run_id)
    return decode_run(run_id, data)


def decode_run(run_id: str, data: bytes) -> dict[str, Any]:
    """The run record stored as ``data``, its fields' types checked.

    Raises:
        CorruptRun: naming the record's key, when ``data`` is not a run record.
    """
    try:
        record = unpack_value(data)
        if not isinstance(record, dict):
            raise CorruptValue(f"a {type(record).__name__}, not a map")
        for name, kind in RUN_FIELDS.items():
            value = record.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CorruptValue(f"field {name!r} is {value!r}, not a {kind.__name__}")
        finished = record.get("f")
        if finished is not None and (not isinstance(finished, int) or isinstance(finished, bool)):
            raise CorruptValue(f"field 'f' is {finished!r}, not a time")
        RunStatus(record["rs"])
    except UNREADABLE as error:
        raise corrupt_run(run_id, WF_RUNS.pack((run_id,)), error) from None
    return dict(record)


def corrupt_run(run_id: str, key: bytes, error: Exception) -> CorruptRun:
    """The CorruptRun for ``error``, raised reading the record at ``key`` of run ``run_id``."""
    record = CorruptRecord.of(key, error)
    return CorruptRun(run_id, key, record.where, record.error)


def write_run(tr: Transaction, run_id: str, run: dict[str, Any]) -> None:
    tr.set(WF_RUNS.pack((run_id,)), pack_value(run))


def set_run_status(tr: Transaction, run_id: str, run: dict[str, Any], status: RunStatus) -> None:
    """Move the run to ``status``, keeping the by-status index in step."""
    tr.clear(WF_BY_STATUS.pack((run["rs"], run["w"], run_id)))
    tr.set(WF_BY_STATUS.pack((status.value, run["w"], run_id)), b"")
    run["rs"] = status.value
    write_run(tr, run_id, run)


def read_step(view: ReadView, run_id: str, step: str) -> dict[str, Any]:
    data = view.get(WF_STEPS.pack((run_id, step)))
    return {"ss": StepStatus.WAITING.value, "a": 0} if data is None else dict(unpack_value(data))


def read_steps(view: ReadView, run_id: str) -> dict[str, dict[str, Any]]:
    """Every step record of the run that has been written, by step key."""
    out = {}
    for key, value in view.get_range(*WF_STEPS.range((run_id,))):
        _, step = WF_STEPS.unpack(key)
        out[step] = dict(unpack_value(value))
    return out


def write_step(tr: Transaction, run_id: str, step: str, record: dict[str, Any]) -> None:
    tr.set(WF_STEPS.pack((run_id, step)), pack_value(record))
