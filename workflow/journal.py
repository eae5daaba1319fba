"""The run journal: an append-only, commit-ordered list of facts per run.

Each event is one key ``("wf", "j", run_id, versionstamp)``: the versionstamp is
filled in by the commit, so events sort in commit order across every process and
engine with no counter to contend on; events of one transaction keep their order
through the versionstamp's user version, counted per transaction object (several
runs' hooks may write in one transaction, e.g. a claim of several steps).
:func:`fold` replays events into step and run states, which is how
:func:`workflow.inspect_run` builds its view.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import WF_JOURNAL
from keyspace.protocol import ReadView, Transaction
from keyspace.subspace import Versionstamp
from quick.corruption import UNREADABLE
from workflow.records import RunStatus, StepStatus, corrupt_run

__all__ = ["Event", "Journal", "read_journal", "StepFacts", "RunFacts", "fold"]

RUN_STARTED = "run_started"
STEP_SCHEDULED = "step_scheduled"
STEP_AWAITING = "step_awaiting_signal"
STEP_CLAIMED = "step_claimed"
STEP_SUCCEEDED = "step_succeeded"
STEP_FAILED = "step_failed"
STEP_RETRYING = "step_retrying"
STEP_SKIPPED = "step_skipped"
STEP_CANCELLED = "step_cancelled"
STEP_HELD = "step_held"
SIGNAL_RECEIVED = "signal_received"
RUN_PAUSED = "run_paused"
RUN_RESUMED = "run_resumed"
RUN_RETRIED = "run_retried"
RUN_SUCCEEDED = "run_succeeded"
RUN_FAILED = "run_failed"
RUN_CANCELLED = "run_cancelled"
#: A map step knew its list: ``count`` instances (the step runs until they all settle).
MAP_EXPANDED = "map_expanded"
#: One instance of a map step failed an attempt and retries (``index``, ``error``).
INSTANCE_RETRYING = "instance_retrying"
#: One instance of a map step failed for good (``index``, ``error``): the map fails.
INSTANCE_FAILED = "instance_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One journal fact: ``kind``, when (``at_ms``), the step if any, and details."""

    kind: str
    at_ms: int
    step: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    position: bytes = b""

    def to_value(self) -> bytes:
        """The stored form (TypeError when a detail is not msgpack-encodable)."""
        return pack_value({"ev": self.kind, "at": self.at_ms, "sk": self.step, "det": self.details})

    @classmethod
    def from_value(cls, key: bytes, data: bytes) -> Event:
        """Decode the event stored at ``key``; CorruptValue naming the key when it is not one."""
        record = unpack_value(data)
        try:
            if not isinstance(record, dict):
                raise TypeError(f"a {type(record).__name__}, not a map")
            event = cls(
                kind=record["ev"],
                at_ms=record["at"],
                step=record["sk"],
                details=dict(record["det"]),
                position=key,
            )
            if not isinstance(event.kind, str) or not isinstance(event.step, str | None):
                raise TypeError(f"kind {event.kind!r}, step {event.step!r}")
            if not isinstance(event.at_ms, int) or isinstance(event.at_ms, bool):
                raise TypeError(f"time {event.at_ms!r}")
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptValue(f"journal event {key!r} is malformed: {error!r}") from error
        return event


_orders: weakref.WeakKeyDictionary[Any, itertools.count[int]] = weakref.WeakKeyDictionary()
_orders_lock = threading.Lock()


def _next_order(tr: Transaction) -> int:
    """A user version unique among the events this transaction object writes."""
    with _orders_lock:
        counter = _orders.get(tr)
        if counter is None:
            counter = _orders[tr] = itertools.count()
    return next(counter) % 65536


class Journal:
    """Appends events of one run within one transaction."""

    def __init__(self, tr: Transaction, run_id: str, now: int) -> None:
        self._tr = tr
        self._run_id = run_id
        self._now = now

    def append(self, kind: str, step: str | None = None, **details: Any) -> None:
        stamp = Versionstamp(user_version=_next_order(self._tr))
        value = Event(kind=kind, at_ms=self._now, step=step, details=details).to_value()
        self._tr.set_versionstamped_key(
            WF_JOURNAL.pack_with_versionstamp((self._run_id, stamp)), value
        )


def read_journal(view: ReadView, run_id: str) -> list[Event]:
    """The run's events in commit order; CorruptRun naming an event that does not decode."""
    events = []
    for key, value in view.get_range(*WF_JOURNAL.range((run_id,))):
        try:
            events.append(Event.from_value(key, value))
        except UNREADABLE as error:
            raise corrupt_run(run_id, key, error) from None
    return events


@dataclass(slots=True)
class StepFacts:
    """A step as the journal tells it."""

    status: StepStatus = StepStatus.WAITING
    attempts: int = 0
    scheduled_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    due_ms: int | None = None
    output: Any = None
    error: str | None = None
    reason: str | None = None
    signalled: bool = False


@dataclass(slots=True)
class RunFacts:
    """A run as the journal tells it."""

    status: RunStatus = RunStatus.RUNNING
    started_ms: int | None = None
    finished_ms: int | None = None
    steps: dict[str, StepFacts] = field(default_factory=dict)


#: The status each step event leaves its step in.
_STEP_STATUS = {
    STEP_SCHEDULED: StepStatus.SCHEDULED,
    STEP_AWAITING: StepStatus.WAITING,
    STEP_CLAIMED: StepStatus.RUNNING,
    STEP_SUCCEEDED: StepStatus.SUCCEEDED,
    STEP_FAILED: StepStatus.FAILED,
    STEP_RETRYING: StepStatus.SCHEDULED,
    STEP_SKIPPED: StepStatus.SKIPPED,
    STEP_CANCELLED: StepStatus.CANCELLED,
    STEP_HELD: StepStatus.WAITING,
    MAP_EXPANDED: StepStatus.RUNNING,
}
#: The status each run event leaves its run in.
_RUN_STATUS = {
    RUN_STARTED: RunStatus.RUNNING,
    RUN_PAUSED: RunStatus.PAUSED,
    RUN_RESUMED: RunStatus.RUNNING,
    RUN_RETRIED: RunStatus.RUNNING,
    RUN_SUCCEEDED: RunStatus.SUCCEEDED,
    RUN_FAILED: RunStatus.FAILED,
    RUN_CANCELLED: RunStatus.CANCELLED,
}


def fold(steps: list[str], events: list[Event]) -> RunFacts:
    """Replay ``events`` into the state of the run and of each of ``steps`` (pure)."""
    run = RunFacts(steps={key: StepFacts() for key in steps})
    for event in events:
        if event.kind in _RUN_STATUS:
            run.status = _RUN_STATUS[event.kind]
            if event.kind == RUN_STARTED:
                run.started_ms = event.at_ms
            elif event.kind in (RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED):
                run.finished_ms = event.at_ms
            elif event.kind == RUN_RETRIED:
                run.finished_ms = None
                for key in event.details.get("steps", ()):
                    run.steps[key] = StepFacts(attempts=run.steps[key].attempts)
            continue
        if event.step is None or event.step not in run.steps:
            continue
        _apply(run.steps[event.step], event)
    return run


def _apply(step: StepFacts, event: Event) -> None:
    details = event.details
    if event.kind == SIGNAL_RECEIVED:
        step.signalled = True
        return
    step.status = _STEP_STATUS.get(event.kind, step.status)
    if event.kind == MAP_EXPANDED and step.started_ms is None:
        step.started_ms = event.at_ms
    if event.kind == STEP_SCHEDULED:
        step.scheduled_ms = event.at_ms
        step.due_ms = details.get("due_ms")
    elif event.kind == STEP_CLAIMED:
        step.attempts += 1
        if step.started_ms is None:
            step.started_ms = event.at_ms
    elif event.kind == STEP_SUCCEEDED:
        step.output = details.get("output")
        step.finished_ms = event.at_ms
        step.error = None
    elif event.kind in (STEP_FAILED, STEP_RETRYING):
        step.error = details.get("error")
        step.due_ms = details.get("retry_at_ms")
        if event.kind == STEP_FAILED:
            step.finished_ms = event.at_ms
    elif event.kind in (STEP_SKIPPED, STEP_CANCELLED):
        step.reason = details.get("reason")
        step.finished_ms = event.at_ms
