"""Deliberate breakages of the queue protocol, to prove the simulator can fail.

Each break monkeypatches one real function of quick for one run (:func:`rebind`
replaces every binding of the original in quick's loaded modules, since modules
import functions by name), and :func:`applied` undoes it afterwards. A break is only
worth listing if the invariants catch it: ``scripts/simulate.py --break NAME`` must
fail within 200 seeds.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import quick.claim_rounds
import quick.fencing
import quick.flow
import quick.followers
import quick.key_limits
import quick.leases
import quick.records
from keyspace.layout import queue_keys
from quick.counters import Tally
from quick.fencing import Standing, Status
from quick.jobs import JobState
from quick.settlement import Act, Action

__all__ = ["BREAKS", "Break", "applied", "rebind", "swap"]

Undo = list[tuple[Any, str, Any]]


def rebind(original: Any, replacement: Any, undo: Undo) -> None:
    """Point every name bound to ``original`` in quick's modules at ``replacement``."""
    for name, module in list(sys.modules.items()):
        if not name.startswith(("quick", "workflow", "consumer")) or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                undo.append((module, attr, value))
                setattr(module, attr, replacement)


def swap(module: Any, attr: str, value: Any, undo: Undo) -> None:
    """Set ``module.attr`` to ``value``, remembering the old value in ``undo``."""
    undo.append((module, attr, getattr(module, attr)))
    setattr(module, attr, value)


class _PointersWithout:
    """The pointers module, except that ``ensure_visible`` does nothing."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        if name == "ensure_visible":
            return lambda *args, **kwargs: None
        return getattr(self._real, name)


def _no_fencing(undo: Undo) -> None:
    """Any claim holds any job still in its queue: the token is never compared."""
    real = quick.fencing.standing

    def standing(tr: Any, claim: Any) -> Standing:
        found = real(tr, claim)
        if found.status is Status.LOST and found.job is not None:
            return Standing(Status.HELD, found.keys, found.job)
        return found

    rebind(real, standing, undo)


def _finish_forgets_counter(undo: Undo) -> None:
    """Completing (or cancelling, discarding) a job never decrements its state's counter."""
    real = quick.records.finish_job

    def finish_job(tr: Any, keys: Any, job: Any, outcome: Any, now: int, tally: Any = None) -> None:
        real(tr, keys, job, outcome, now, Tally())  # a tally nobody flushes

    rebind(real, finish_job, undo)


def _without_pointer_upkeep(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, run with the writer's ``pointers.ensure_visible`` doing nothing."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        undo: Undo = []
        swap(quick.records, "pointers", _PointersWithout(quick.pointers), undo)
        try:
            return call(*args, **kwargs)
        finally:
            for module, attr, value in undo:
                setattr(module, attr, value)

    return wrapped


def _put_back_forgets_pointer(undo: Undo) -> None:
    """fail / snooze / release put the job back without making the pointer cover it."""
    real = quick.records.apply
    forgetful = _without_pointer_upkeep(real)

    def apply(tr: Any, keys: Any, job: Any, action: Action, now: int, *a: Any, **kw: Any) -> Any:
        put_back = action.act is Act.PUT_BACK
        return (forgetful if put_back else real)(tr, keys, job, action, now, *a, **kw)

    rebind(real, apply, undo)


def _enqueue_skips_pointer(undo: Undo) -> None:
    """New jobs (enqueue, cron activation, migration) are written but the writer never
    calls ``ensure_visible`` for them."""
    swap(quick.records.NewJobs, "flush", _without_pointer_upkeep(quick.records.NewJobs.flush), undo)


def _heartbeat_keeps_index(undo: Undo) -> None:
    """A heartbeat rewrites the leased record's expiry but leaves its index entry behind."""
    real = quick.records.store_job

    def store_job(tr: Any, keys: Any, old: Any, new: Any, tally: Any = None, **kw: Any) -> int:
        if old is not None and old.state is JobState.LEASED and new.state is JobState.LEASED:
            value = new.to_value()
            tr.set(keys.job(new.id), value)
            return len(value)
        return int(real(tr, keys, old, new, tally, **kw))

    rebind(real, store_job, undo)


def _dead_letter_keeps_record(undo: Undo) -> None:
    """Dead-lettering copies the job to the dead letters but leaves it in its queue."""
    real = quick.records.bury_job

    def bury_job(tr: Any, keys: Any, job: Any, error: str, now: int, tally: Any = None) -> None:
        real(tr, keys, job, error, now, tally)
        tr.set(keys.job(job.id), job.to_value())
        tr.set(job.index_key(keys), b"")

    rebind(real, bury_job, undo)


def _finish_keeps_unique(undo: Undo) -> None:
    """A finished job keeps its unique-key reservation, so the key is never free again."""
    real = quick.records.finish_job

    def finish_job(tr: Any, keys: Any, job: Any, outcome: Any, now: int, tally: Any = None) -> None:
        real(tr, keys, job, outcome, now, tally)
        if job.unique_key is not None:
            tr.set(keys.unique(job.unique_key), job.id.encode())

    rebind(real, finish_job, undo)


def _complete_not_idempotent(undo: Undo) -> None:
    """A complete retried after commit_unknown_result says it completed the job again,
    so a transactional completion applies its effect twice."""
    real = quick.leases.complete_in

    def complete_in(tr: Any, claim: Any, now: int, tally: Any = None, **kw: Any) -> bool:
        if quick.fencing.standing(tr, claim).status is Status.SETTLED:
            return True
        return bool(real(tr, claim, now, tally, **kw))

    rebind(real, complete_in, undo)


def _claim_forgets_tries(undo: Undo) -> None:
    """A claim round retried after commit_unknown_result claims afresh instead of
    returning what its committed try leased: those jobs stay leased to nobody's claim."""

    def claimed_before(tr: Any, tries: Any) -> list[Any]:
        return []

    swap(quick.claim_rounds, "_claimed_before", claimed_before, undo)


def _map_succeeds_early(undo: Undo) -> None:
    """A map step succeeds one instance early: the next-to-last success completes it."""
    import workflow.engine
    import workflow.mapping
    import workflow.steps

    real = workflow.mapping.instance_succeeded

    def instance_succeeded(run: Any, instance: Any, output: Any) -> None:
        real(run, instance, output)
        step = run.step(instance.key)
        if step.status.value == "running" and step.count and step.done == step.count - 1:
            workflow.engine.succeed(run, step, None)

    swap(workflow.steps, "instance_succeeded", instance_succeeded, undo)


def _branch_runs_every_path(undo: Undo) -> None:
    """A branch step's choice leaves no step out: every branch runs."""
    import workflow.engine

    swap(workflow.engine, "unchosen", lambda branches, chosen: [], undo)


def _cancel_spares_children(undo: Undo) -> None:
    """Ending a run (cancelled, or failed) leaves its running child runs running."""
    import workflow.engine

    swap(workflow.engine, "cancel", lambda run: False, undo)


def _key_limits_ignored(undo: Undo) -> None:
    """Claims never consult keyed limits: every job naming a key is leased at once,
    however many of its key's jobs already run."""

    def admit(self: Any, tr: Any, job: Any, now: int, tally: Any = None) -> int | None:
        return None

    swap(quick.key_limits.KeyGate, "admit", admit, undo)


def _finish_keeps_key_count(undo: Undo) -> None:
    """A job naming limit keys that is finished or dead-lettered keeps its slots: the
    keys' running counters are not decremented (a claim still counts it running)."""
    real = quick.key_limits.moved

    def moved(tr: Any, job: Any, old: Any, new: Any, tally: Any) -> None:
        if new is not None:
            real(tr, job, old, new, tally)

    swap(quick.key_limits, "moved", moved, undo)


def _batch_counts_put_backs(undo: Undo) -> None:
    """A member put back (a failure retried, a snooze, a release) is counted in its batch
    as if it had settled, so the batch's callbacks fire before its members are done."""
    swap(quick.leases, "_ENDS", (Act.FINISH, Act.BURY, Act.PUT_BACK), undo)


def _release_on_first_dependency(undo: Undo) -> None:
    """A waiting job is released when the first of its dependencies completes."""
    real = quick.followers.decode_held

    def decode_held(key: bytes, data: bytes | None) -> Any:
        held = real(key, data)
        return None if held is None else {**held, "lw": 1}

    rebind(real, decode_held, undo)


def _debounce_ignores_start(undo: Undo) -> None:
    """A debounce hands its payload to the key's job even after that job has started."""

    def waiting(tr: Any, job_id: str, queue: str, now: int) -> Any:
        return quick.records.load_job(tr, queue_keys(queue), job_id)

    swap(quick.flow, "_waiting", waiting, undo)


def _throttle_forgets_windows(undo: Undo) -> None:
    """A throttle never reads what it counted: every job fits its window."""
    swap(quick.flow, "_counts", lambda key, data, current: {}, undo)


@dataclass(frozen=True)
class Break:
    """One deliberate breakage: its name, what it does, and how to apply it."""

    name: str
    apply: Callable[[Undo], None]

    @property
    def summary(self) -> str:
        return (self.apply.__doc__ or "").split("\n\n")[0].replace("\n", " ").strip()


BREAKS: dict[str, Break] = {
    b.name: b
    for b in (
        Break("no-fencing", _no_fencing),
        Break("finish-forgets-counter", _finish_forgets_counter),
        Break("put-back-forgets-pointer", _put_back_forgets_pointer),
        Break("enqueue-skips-pointer", _enqueue_skips_pointer),
        Break("heartbeat-keeps-index", _heartbeat_keeps_index),
        Break("dead-letter-keeps-record", _dead_letter_keeps_record),
        Break("finish-keeps-unique", _finish_keeps_unique),
        Break("complete-not-idempotent", _complete_not_idempotent),
        Break("claim-forgets-tries", _claim_forgets_tries),
        Break("map-succeeds-early", _map_succeeds_early),
        Break("branch-runs-every-path", _branch_runs_every_path),
        Break("cancel-spares-children", _cancel_spares_children),
        Break("key-limits-ignored", _key_limits_ignored),
        Break("finish-keeps-key-count", _finish_keeps_key_count),
        Break("batch-counts-put-backs", _batch_counts_put_backs),
        Break("release-on-first-dependency", _release_on_first_dependency),
        Break("debounce-ignores-start", _debounce_ignores_start),
        Break("throttle-forgets-windows", _throttle_forgets_windows),
    )
}


@contextlib.contextmanager
def applied(name: str | None) -> Iterator[None]:
    """Apply the break ``name`` (None: none) for the duration of the block."""
    undo: Undo = []
    if name is not None:
        BREAKS[name].apply(undo)
    try:
        yield
    finally:
        for module, attr, value in reversed(undo):
            setattr(module, attr, value)
