"""Reading runs: ``inspect_run``, ``explain_run`` and ``list_runs``.

Each reads one consistent snapshot. ``inspect_run`` replays the run's journal
(:func:`workflow.journal.fold`) over its stored definition; ``explain_run`` turns that
view into the reasons a run is where it is and what an operator can do next.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keyspace.layout import WF_BY_STATUS, WF_RUNS
from keyspace.protocol import Database, ReadView, Transaction
from quick.corruption import UNREADABLE, CorruptRecord
from quick.inspection import Listing
from workflow import journal as events
from workflow.definition import StepKind
from workflow.errors import CorruptRun
from workflow.records import (
    RunStatus,
    corrupt_run,
    decode_run,
    read_instances,
    read_run,
    read_step,
)

__all__ = [
    "StepView",
    "InstanceView",
    "inspect_instances",
    "RunView",
    "RunSummary",
    "Explanation",
    "inspect_run",
    "explain_run",
    "list_runs",
    "read_runs",
    "RunPage",
    "page_runs",
    "RUN_PAGE",
    "layers",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepView:
    """One step of a run: its kind, status, attempts, timings, output and last error."""

    key: str
    kind: str
    topic: str | None
    after: tuple[str, ...]
    status: str
    attempts: int
    scheduled_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    due_ms: int | None
    output: Any
    error: str | None
    reason: str | None
    signalled: bool
    #: A map step: its instances by status ("waiting" counts those not scheduled yet);
    #: None before its list is known, and for other kinds.
    instances: dict[str, int] | None = None
    #: A child step: the child run that stands for it (None: none yet, or no child step).
    child_run: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceView:
    """One instance of a map step: its item's index, status, attempts, output, error."""

    index: int
    status: str
    attempts: int
    output: Any
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunView:
    """A run as of one snapshot; ``steps`` maps step keys to :class:`StepView`."""

    run_id: str
    workflow: str
    status: str
    queue_id: str
    input: Any
    created_ms: int
    finished_ms: int | None
    steps: Mapping[str, StepView]
    journal: list[events.Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """A line of :func:`list_runs`."""

    run_id: str
    workflow: str
    status: str
    queue_id: str
    created_ms: int
    finished_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why a run is where it is; ``str()`` says it in words."""

    run_id: str
    status: str
    summary: str
    running: list[str]
    waiting_on: list[str]
    awaiting_signal: list[str]
    timers: dict[str, int]
    retries: dict[str, int]
    failed: dict[str, str]
    next_actions: list[str]
    #: Map steps under way: a line of counts each.
    maps: dict[str, str] = field(default_factory=dict)
    #: Child steps under way: their child run's explanation each.
    children: dict[str, Explanation] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"run {self.run_id} is {self.status}: {self.summary}"]
        lines += [f"  running: step {key!r}" for key in self.running if key not in self.maps]
        lines += [f"  map step {key!r}: {counts}" for key, counts in self.maps.items()]
        for key, child in self.children.items():
            lines.append(
                f"  step {key!r} is waiting for child run {child.run_id}, itself {child.status}: "
                f"{child.summary}"
            )
        lines += [f"  waiting for signal on step {key!r}" for key in self.awaiting_signal]
        lines += [f"  timer {key!r} fires at {_when(at)}" for key, at in self.timers.items()]
        lines += [f"  step {key!r} retries at {_when(at)}" for key, at in self.retries.items()]
        lines += [f"  queued: step {key!r}" for key in self.waiting_on]
        lines += [f"  step {key!r} failed: {error}" for key, error in self.failed.items()]
        if self.next_actions:
            lines.append("next: " + "; ".join(self.next_actions))
        return "\n".join(lines)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="seconds")


def _instances(view: ReadView, run_id: str, key: str) -> dict[str, int] | None:
    step = read_step(view, run_id, key)
    if step.count is None:
        return None
    rows = read_instances(view, run_id, key)
    counts = Counter(row.status.value for row in rows)
    if step.count > len(rows):
        counts["waiting"] += step.count - len(rows)
    return dict(counts)


def _read(view: ReadView, run_id: str) -> RunView:
    record = read_run(view, run_id)
    try:
        definition = record.decode_definition()
    except UNREADABLE as error:
        raise corrupt_run(run_id, WF_RUNS.pack((run_id,)), error) from None
    journal = events.read_journal(view, run_id)
    facts = events.fold(list(definition.steps), journal)
    steps = {}
    for key, spec in definition.steps.items():
        fact = facts.steps[key]
        steps[key] = StepView(
            key=key,
            kind=spec.kind.value,
            topic=spec.topic,
            after=spec.after,
            status=fact.status,
            attempts=fact.attempts,
            scheduled_ms=fact.scheduled_ms,
            started_ms=fact.started_ms,
            finished_ms=fact.finished_ms,
            due_ms=fact.due_ms,
            output=fact.output,
            error=fact.error,
            reason=fact.reason,
            signalled=fact.signalled,
            instances=_instances(view, run_id, key) if spec.kind is StepKind.MAP else None,
            child_run=read_step(view, run_id, key).child_run
            if spec.kind is StepKind.CHILD
            else None,
        )
    return RunView(
        run_id=run_id,
        workflow=record.workflow,
        status=facts.status,
        queue_id=record.queue,
        input=record.input,
        created_ms=record.created_ms,
        finished_ms=facts.finished_ms,
        steps=steps,
        journal=journal,
    )


def inspect_run(db: Database | Transaction, run_id: str) -> RunView:
    """The run and every step, from one snapshot of its journal.

    Raises:
        RunNotFound: no run has this id.
        CorruptRun: its record or journal does not decode (the error names the key).
    """
    if isinstance(db, Transaction):
        return _read(db.snapshot, run_id)
    return db.transact(lambda tr: _read(tr.snapshot, run_id))


def inspect_instances(
    db: Database | Transaction, run_id: str, step: str, *, start: int = 0, limit: int = 100
) -> list[InstanceView]:
    """Instances of map step ``step`` from index ``start`` (at most ``limit``; one
    snapshot), each as :class:`InstanceView`; instances not scheduled yet are waiting.

    Raises:
        RunNotFound; CorruptRun naming an instance record that does not decode.
    """

    def body(tr: Transaction) -> list[InstanceView]:
        view = tr.snapshot
        count = read_step(view, run_id, step).count
        read_run(view, run_id)
        if count is None:
            return []
        stop = min(count, start + limit)
        rows = {row.index: row for row in read_instances(view, run_id, step, start, stop=stop)}
        out = []
        for index in range(start, stop):
            row = rows.get(index)
            out.append(
                InstanceView(
                    index=index,
                    status=row.status.value if row else "waiting",
                    attempts=row.attempts if row else 0,
                    output=row.output if row else None,
                    error=row.error if row else None,
                )
            )
        return out

    if isinstance(db, Transaction):
        return body(db)
    return db.transact(body)


def explain_run(db: Database | Transaction, run_id: str) -> Explanation:
    """Why the run is where it is, and what an operator can do next (one snapshot),
    following running child steps down their chain of child runs."""

    def body(tr: Transaction) -> Explanation:
        return _explain_chain(tr, run_id, depth=0)

    if isinstance(db, Transaction):
        return body(db)
    return db.transact(body)


#: How deep :func:`explain_run` follows child runs (definitions cannot nest in a cycle).
CHAIN_DEPTH = 16


def _explain_chain(tr: Transaction, run_id: str, depth: int) -> Explanation:
    view = _read(tr.snapshot, run_id)
    children = {}
    if depth < CHAIN_DEPTH:
        for key, step in view.steps.items():
            if step.child_run is not None and step.status == "running":
                children[key] = _explain_chain(tr, step.child_run, depth + 1)
    return explain(view, children)


def _map_line(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    rest = ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items()) if status != "succeeded"
    )
    line = f"{counts.get('succeeded', 0)} of {total} instances succeeded"
    return f"{line} ({rest})" if rest else line


#: The error a step records when the worker that claimed it had no handler for its topic.
NO_HANDLER = "no handler is registered"


def explain(run: RunView, children: Mapping[str, Explanation] | None = None) -> Explanation:
    """The explanation of an inspected run (pure), given its running child steps'."""
    running, queued, awaiting = [], [], []
    timers: dict[str, int] = {}
    retries: dict[str, int] = {}
    failed: dict[str, str] = {}
    for key, step in run.steps.items():
        if step.status == "running":
            running.append(key)
        elif step.status == "scheduled" and step.kind == StepKind.SLEEP and step.due_ms:
            timers[key] = step.due_ms
        elif step.status == "scheduled" and step.error is not None and step.due_ms:
            retries[key] = step.due_ms
        elif step.status == "scheduled":
            queued.append(key)
        elif step.status == "waiting" and step.kind == StepKind.EXTERNAL:
            done = all(run.steps[dep].status == "succeeded" for dep in step.after)
            if done and not step.signalled:
                awaiting.append(key)
        elif step.status == "failed":
            failed[key] = step.error or "unknown error"
            if NO_HANDLER in failed[key]:
                failed[key] = (
                    f"no worker that claimed it has a handler for its topic {step.topic!r} "
                    f"(removed by a redeploy? runs keep the definition they started with): "
                    f"{failed[key]}"
                )
    maps = {
        key: _map_line(step.instances)
        for key, step in run.steps.items()
        if step.instances is not None and step.status == "running"
    }
    status = run.status
    actions: list[str] = []
    if status == RunStatus.SUCCEEDED:
        summary = "every step succeeded"
    elif status == RunStatus.CANCELLED:
        summary = "it was cancelled"
    elif status == RunStatus.FAILED:
        summary = "; ".join(f"step {k!r} failed after its attempts ran out" for k in failed)
        summary = summary or "a step failed"
        actions.append(f"`quick runs retry {run.run_id}` re-runs the failed and skipped steps")
        for key in failed:
            topic = run.steps[key].topic
            if NO_HANDLER in failed[key] and topic is not None:
                actions.append(f"deploy a worker with a handler for {topic!r}, then retry")
    elif status == RunStatus.PAUSED:
        summary = "it is paused; no new step starts until it is resumed"
        actions.append(f"`quick runs resume {run.run_id}`")
    else:
        parts = []
        if children:
            parts += [
                f"waiting for child run {child.run_id} (step {key!r}), itself {child.summary}"
                for key, child in children.items()
            ]
        if running:
            parts.append(f"{len(running)} step(s) running")
        if awaiting:
            parts.append("waiting for a signal on " + ", ".join(repr(k) for k in awaiting))
        if timers:
            parts.append(f"{len(timers)} timer(s) pending")
        if retries:
            parts.append(f"{len(retries)} step(s) waiting to retry")
        if queued:
            parts.append(f"{len(queued)} step(s) queued for a worker")
        summary = ", ".join(parts) or "between steps"
        for key in awaiting:
            actions.append(f"`quick signal {run.run_id} {key} --payload JSON`")
        if queued and not running:
            actions.append(f"check that a worker serves queue {run.queue_id!r}")
    if status in (RunStatus.RUNNING, RunStatus.PAUSED):
        actions.append(f"`quick runs cancel {run.run_id}`")
    return Explanation(
        run_id=run.run_id,
        status=status,
        summary=summary,
        running=running,
        waiting_on=queued,
        awaiting_signal=awaiting,
        timers=timers,
        retries=retries,
        failed=failed,
        next_actions=actions,
        maps=maps,
        children=dict(children or {}),
    )


#: Index entries (and run records) :func:`list_runs` reads per transaction.
RUN_PAGE = 200


def list_runs(
    db: Database | Transaction,
    *,
    workflow: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[RunSummary]:
    """Runs, optionally of one workflow and/or in one status: the newest ``limit``.

    The by-status index is not ordered by time, so every entry of the statuses asked is
    read, as :func:`page_runs` pages of :data:`RUN_PAGE`: given a database, each page in
    its own transaction, so a store of any size lists without passing FoundationDB's
    5-second limit. Each page is one snapshot, the listing is not: a run that changes
    status while it runs may be missed, or met twice (the later read is kept). Given a
    transaction, every page is read in it. A run record that does not decode is left
    out (:func:`read_runs` names it). Narrow by status on stores with very many runs.

    Raises:
        ValueError: ``status`` is not a run status.
    """
    return read_runs(db, workflow=workflow, status=status, limit=limit).items


def read_runs(
    db: Database | Transaction,
    *,
    workflow: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> Listing[RunSummary]:
    """:func:`list_runs`, and the run records (or index entries) it skipped because they
    do not decode, each named by its key.

    Raises:
        ValueError: ``status`` is not a run status.
    """
    runs: dict[str, RunSummary] = {}
    skipped: dict[bytes, CorruptRecord] = {}
    after: tuple[str, str, str] | None = None
    while True:
        page = page_runs(db, workflow=workflow, status=status, after=after, limit=RUN_PAGE)
        for run in page.runs:
            if isinstance(run, RunSummary):
                runs[run.run_id] = run
            else:
                skipped[run.key] = run
        if page.after is None:
            break
        after = page.after
    newest = sorted(runs.values(), key=lambda run: run.created_ms, reverse=True)
    return Listing[RunSummary].of([*newest[:limit], *skipped.values()])


def _summary(run_id: str, data: bytes) -> RunSummary:
    record = decode_run(run_id, data)
    return RunSummary(
        run_id=run_id,
        workflow=record.workflow,
        status=record.status,
        queue_id=record.queue,
        created_ms=record.created_ms,
        finished_ms=record.finished_ms,
    )


def _summary_or_corrupt(run_id: str, data: bytes) -> RunSummary | CorruptRecord:
    try:
        return _summary(run_id, data)
    except CorruptRun as error:
        return CorruptRecord(key=error.key, error=error.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPage:
    """One page of :func:`page_runs`; ``after`` continues it (None: this was the last)."""

    runs: list[RunSummary | CorruptRecord]
    after: tuple[str, str, str] | None


def page_runs(
    db: Database | Transaction,
    *,
    workflow: str | None = None,
    status: str | None = None,
    after: tuple[str, str, str] | None = None,
    limit: int = 50,
) -> RunPage:
    """A page of runs in index order (status, workflow, run id), reading only ``limit``
    run records however many runs there are: what a screen of runs needs. One range
    read per status it reaches, then every record at once.

    ``after`` is the previous page's :attr:`RunPage.after`. A run record that does not
    decode is a :class:`CorruptRecord` in its place.

    Raises:
        ValueError: ``status`` is not a run status.
    """
    statuses = [RunStatus(status)] if status is not None else list(RunStatus)
    statuses.sort(key=lambda state: state.value)

    def body(tr: Transaction) -> RunPage:
        found: list[str] = []
        bad: list[CorruptRecord] = []
        last: tuple[str, str, str] | None = None
        for state in statuses:
            if after is not None and state.value < after[0]:
                continue
            prefix: tuple[Any, ...] = (
                (state.value,) if workflow is None else (state.value, workflow)
            )
            begin, end = WF_BY_STATUS.range(prefix)
            if after is not None and state.value == after[0]:
                begin = max(begin, WF_BY_STATUS.pack(after) + b"\x00")
            while len(found) < limit:
                wanted = limit - len(found)
                rows = tr.snapshot.get_range(begin, end, limit=wanted)
                for key, _ in rows:
                    try:
                        _, name, run_id = WF_BY_STATUS.unpack(key)
                        if not isinstance(run_id, str) or not isinstance(name, str):
                            raise ValueError(f"run id {run_id!r} is not text")
                    except Exception as error:  # fdb.tuple raises several kinds on foreign bytes
                        bad.append(CorruptRecord.of(key, error))
                        continue
                    last = (state.value, name, run_id)
                    found.append(run_id)
                if len(rows) < wanted:
                    break
                begin = rows[-1][0] + b"\x00"  # past index entries that did not decode
            if len(found) >= limit:
                break
        run_keys = [WF_RUNS.pack((run_id,)) for run_id in found]
        out: list[RunSummary | CorruptRecord] = list(bad)
        for run_id, data in zip(found, tr.get_many(run_keys, snapshot=True), strict=True):
            if data is not None:
                out.append(_summary_or_corrupt(run_id, data))
        return RunPage(runs=out, after=last if len(found) >= limit else None)

    if isinstance(db, Transaction):
        return body(db)
    return db.transact(body)


def layers(after: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Steps in topological layers: a step sits one layer below its deepest dependency.

    ``after`` maps each step to its dependencies, in definition order (kept within a layer).
    """
    depth: dict[str, int] = {}

    def of(key: str) -> int:
        if key not in depth:
            depth[key] = 1 + max((of(dep) for dep in after[key]), default=-1)
        return depth[key]

    out: list[list[str]] = []
    for key in after:
        level = of(key)
        out.extend([] for _ in range(level + 1 - len(out)))
        out[level].append(key)
    return out
