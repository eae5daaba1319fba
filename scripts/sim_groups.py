"""The simulation's job groups: batches with callbacks, dependencies, debounce, throttle.

:class:`GroupOperations` is mixed into :class:`simulate.Simulation` next to
:class:`sim_ops.Operations`: its operations call the real ``quick.enqueue_batch``,
``add_to_batch``, ``close_batch`` and ``quick.enqueue`` with ``depends_on``,
``debounce`` and ``throttle``, and keep a model of what each must lead to. Before the
store is checked after every step, :meth:`GroupOperations.follow` moves that model on
from the job statuses the other operations recorded (a member settled, a dependency
finished), adopts every callback job the model expects into the job model, and
reports what the store did that the model forbids:

* **each callback exactly once**: a batch's callback job exists exactly when the model
  says the batch is done (closed, every member settled) and the callback's kind applies
  (``complete`` always; ``success`` with no member failed; ``failure`` otherwise);
  one job per callback id, never one before the batch is done;
* **no dependent runs before its dependencies**: a job enqueued with ``depends_on``
  stays ``waiting`` (off its queue) until every dependency the model knew as live has
  finished, and is then queued or, when one failed and its mode is ``discard``,
  discarded; the general job model then checks the store agrees;
* **debounce**: a claim of a debounced job carries the last payload enqueued under it,
  and a payload is never handed to a debounced job that has already started;
* **throttle**: no key ever has more than ``n`` jobs scheduled to start in one window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sim_ops import PENDING, QUEUES, ModelJob
from sim_store import Snapshot

import quick
from quick.jobs import Claim

__all__ = ["GroupOperations", "FAILED", "WAITING"]

WAITING = "waiting"
FAILED = ("dead", "discarded", "cancelled")
_FINAL = ("completed", *FAILED)
_KEYS = ("k0", "k1")
#: Throttle: at most this many per window, windows of this many ms.
_RUNS, _WINDOW_MS = 2, 10_000


@dataclass
class ModelBatch:
    """What the simulator knows of one batch."""

    unsettled: set[str]
    open: bool
    callbacks: dict[str, str]
    failed: bool = False


@dataclass
class ModelWait:
    """A job waiting for dependencies: those still live, and its mode."""

    live: set[str]
    mode: str


@dataclass
class GroupModel:
    batches: dict[str, ModelBatch] = field(default_factory=dict)
    waits: dict[str, ModelWait] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)  # debounced job -> last payload
    started: set[str] = field(default_factory=set)  # debounced jobs claimed at least once
    windows: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))


class GroupOperations:
    """Batches, dependencies, debounce and throttle: operations and their model."""

    group: GroupModel

    def _spec(self) -> dict[str, Any]:
        return {
            "queue_id": self.rng.choice(QUEUES),  # type: ignore[attr-defined]
            "topic": "t",
            "payload": {"n": self.ids},  # type: ignore[attr-defined]
            "max_attempts": self.rng.choice((None, 1, 2)),  # type: ignore[attr-defined]
            "job_id": self.new_id(),  # type: ignore[attr-defined]
        }

    def _callbacks(self) -> dict[str, Any]:
        rng = self.rng  # type: ignore[attr-defined]
        kinds = [k for k in ("success", "complete", "failure") if rng.random() < 0.6]
        return {
            f"on_{kind}": {"topic": "t", "payload": kind, "queue_id": rng.choice(QUEUES)}
            for kind in kinds
        }

    # -- operations ---------------------------------------------------------------------

    def batch(self) -> str:
        rng = self.rng  # type: ignore[attr-defined]
        members = [self._spec() for _ in range(rng.randint(1, 4))]
        keep_open = rng.random() < 0.4
        callbacks = self._callbacks()
        batch_id = quick.enqueue_batch(
            self.db,  # type: ignore[attr-defined]
            rng.choice(QUEUES),
            members,
            keep_open=keep_open,
            **callbacks,
        )
        self._members(batch_id, members)
        status = quick.batch_status(self.db, batch_id)  # type: ignore[attr-defined]
        ids = {m["job_id"] for m in members}
        self.group.batches[batch_id] = ModelBatch(ids, keep_open, dict(status.callbacks))
        return f"{batch_id[:10]} {sorted(ids)} open={keep_open} {sorted(callbacks)}"

    def _members(self, batch_id: str, members: list[dict[str, Any]]) -> None:
        for spec in members:
            self.jobs[spec["job_id"]] = ModelJob(spec["queue_id"])  # type: ignore[attr-defined]

    def batch_more(self) -> str:
        """Add members to an open batch, or close it."""
        rng = self.rng  # type: ignore[attr-defined]
        open_ = sorted(b for b, m in self.group.batches.items() if m.open)
        if not open_:
            return "no open batch"
        batch_id = rng.choice(open_)
        model = self.group.batches[batch_id]
        if rng.random() < 0.5:
            members = [self._spec() for _ in range(rng.randint(1, 2))]
            quick.add_to_batch(self.db, batch_id, members)  # type: ignore[attr-defined]
            self._members(batch_id, members)
            model.unsettled |= {m["job_id"] for m in members}
            return f"{batch_id[:10]} + {[m['job_id'] for m in members]}"
        closed = quick.close_batch(self.db, batch_id)  # type: ignore[attr-defined]
        if not closed:
            self.problems.append(f"close_batch({batch_id}) said closed already")  # type: ignore[attr-defined]
        model.open = False
        return f"{batch_id[:10]} closed"

    def depend(self) -> str:
        rng = self.rng  # type: ignore[attr-defined]
        jobs: dict[str, ModelJob] = self.jobs  # type: ignore[attr-defined]
        known = sorted(jobs)
        if not known:
            return "no job"
        deps = rng.sample(known, min(len(known), rng.randint(1, 2)))
        unknown = rng.random() < 0.05
        if unknown:
            deps.append("f" * 16)
        mode = rng.choice(("discard", "discard", "run"))
        spec = self._spec()
        try:
            got = quick.enqueue(self.db, depends_on=deps, if_dependency_fails=mode, **spec)  # type: ignore[attr-defined]
        except quick.InvalidArgument as refused:
            purged = any(jobs[d].status == "purged" for d in deps if d in jobs)
            if not (unknown or purged):
                self.problems.append(f"depends_on={deps} refused: {refused}")  # type: ignore[attr-defined]
            return f"refused: {refused}"
        if unknown or any(jobs[d].status == "purged" for d in deps):
            self.problems.append(f"depends_on={deps} (unknown or purged) was accepted")  # type: ignore[attr-defined]
        statuses = [jobs[d].status for d in deps]
        model = ModelJob(spec["queue_id"])
        self.jobs[got] = model  # type: ignore[attr-defined]
        if mode == "discard" and any(s in FAILED for s in statuses):
            model.status = "discarded"
        else:
            live = {d for d in deps if jobs[d].status in (PENDING, WAITING)}
            if live:
                model.status = WAITING
                self.group.waits[got] = ModelWait(live, mode)
        return f"{got} after {deps} ({mode}): {model.status}"

    def debounce(self) -> str:
        rng = self.rng  # type: ignore[attr-defined]
        spec = self._spec()
        del spec["job_id"]  # debounce names its own job
        spec["queue_id"] = QUEUES[0]  # one queue and key, so enqueues meet in a window
        key, window = _KEYS[0], rng.choice((1.0, 3.0))
        got = quick.enqueue(self.db, debounce=window, key=key, **spec)  # type: ignore[attr-defined]
        jobs: dict[str, ModelJob] = self.jobs  # type: ignore[attr-defined]
        if got in self.group.last:
            if got in self.group.started:
                self.problems.append(  # type: ignore[attr-defined]
                    f"debounce {key!r}: payload {spec['payload']} went to job {got}, "
                    "which has already started, so it is lost"
                )
        elif got in jobs:
            self.problems.append(f"debounce answered {got}, a job that is not debounced")  # type: ignore[attr-defined]
        else:
            jobs[got] = ModelJob(spec["queue_id"])
        self.group.last[got] = spec["payload"]
        return f"{key} on {spec['queue_id']} -> {got}"

    def throttle(self) -> str:
        rng = self.rng  # type: ignore[attr-defined]
        spec = self._spec()
        key, mode = rng.choice(_KEYS), rng.choice(("delay", "drop"))
        done = quick.enqueue(
            self.db,  # type: ignore[attr-defined]
            throttle=(_RUNS, _WINDOW_MS / 1000),
            key=key,
            when_throttled=mode,
            **spec,
        )
        if done.outcome == "dropped":
            return f"{key} {mode}: dropped"
        self.jobs[spec["job_id"]] = ModelJob(spec["queue_id"])  # type: ignore[attr-defined]
        start = done.run_at_ms if done.run_at_ms is not None else self.now  # type: ignore[attr-defined]
        window = (key, start - start % _WINDOW_MS)
        self.group.windows[window] += 1
        if self.group.windows[window] > _RUNS:
            self.problems.append(  # type: ignore[attr-defined]
                f"throttle {key!r}: {self.group.windows[window]} jobs in the window from "
                f"{window[1]}, over {_RUNS}"
            )
        return f"{key} {mode}: {done.outcome} at {done.run_at_ms}"

    # -- the model ----------------------------------------------------------------------

    def took(self, consumer: str, claims: list[Claim]) -> None:
        for claim in claims:
            if claim.job_id in self.group.last:
                if claim.payload != self.group.last[claim.job_id]:
                    self.problems.append(  # type: ignore[attr-defined]
                        f"debounced job {claim.job_id} runs payload {claim.payload}, "
                        f"not the last one enqueued ({self.group.last[claim.job_id]})"
                    )
                self.group.started.add(claim.job_id)
        super().took(consumer, claims)  # type: ignore[misc]

    def follow(self, snap: Snapshot) -> list[str]:
        """Move the group model on from the job statuses; what the store got wrong."""
        jobs: dict[str, ModelJob] = self.jobs  # type: ignore[attr-defined]
        changed = True
        while changed:  # a discarded dependent fails its own dependents in turn
            changed = False
            for job_id, wait in list(self.group.waits.items()):
                failed = [d for d in wait.live if jobs[d].status in FAILED]
                wait.live -= {d for d in wait.live if jobs[d].status in _FINAL}
                if failed and wait.mode == "discard":
                    jobs[job_id].status = "discarded"
                elif not wait.live:
                    jobs[job_id].status = PENDING
                else:
                    continue
                del self.group.waits[job_id]
                changed = True
        out = []
        for batch_id, batch in self.group.batches.items():
            settled = {m for m in batch.unsettled if jobs[m].status in _FINAL}
            batch.failed |= any(jobs[m].status in FAILED for m in settled)
            batch.unsettled -= settled
            done = not batch.open and not batch.unsettled
            for kind, job_id in batch.callbacks.items():
                due = done and (kind == "complete" or (kind == "success") != batch.failed)
                stored = job_id in snap.jobs or job_id in snap.directory
                if due and job_id not in jobs:
                    if not stored:
                        out.append(f"batch {batch_id} is done but its {kind} callback is not")
                    entry = snap.directory.get(job_id, {})
                    jobs[job_id] = ModelJob(str(entry.get("q", "?")))
                elif not due and stored:
                    out.append(
                        f"batch {batch_id}: {kind} callback {job_id} enqueued, but the batch is "
                        f"{'open' if batch.open else 'not done'} "
                        f"({len(batch.unsettled)} unsettled, failed={batch.failed})"
                    )
        return out
