"""The pointer index under concurrent producers, consumers and collectors (QuiCK's GC race).

Operations run at the *transaction* level: two operations open transactions on the same
database, both bodies run (so both read the same snapshot), then they commit in a drawn
order; a commit refused with 1020 is retried on a fresh transaction, re-running its body,
as the retry loop would. After every step the store is read directly (through
:mod:`keyspace.layout`, not through the pointer module) and the pointer invariant of
:mod:`quick.pointers` is checked:

* a pointer record and its index entry mirror each other: a queue has a record iff it has
  an index entry, never more than one entry, and the entry's ``vis_ms`` is the record's;
* every queue holding a job (ready or scheduled index non-empty) has a pointer, and it is
  not later than the queue's earliest job visibility by more than
  :data:`quick.pointers.REWRITE_THRESHOLD_MS`.

That tolerance is the protocol's own (a producer moves the pointer earlier only when it is
later than the new job by more than the threshold), so "ready jobs => pointer <= now" holds
up to it: a job delayed 100 ms on an empty queue puts the pointer at now + 100, and a ready
job enqueued next rightly leaves it there.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quick
from keyspace.codec import unpack_value
from keyspace.errors import StorageError
from keyspace.layout import POINTER_INDEX, POINTERS, QueueKeys
from keyspace.protocol import Database, Transaction
from quick import pointers
from quick.claiming import claim_jobs
from quick.enqueueing import prepare, store_new
from quick.jobs import Claim, JobState
from quick.leases import complete_in, fail_in

T0 = 1_800_000_000_000
LEASE_MS = 10_000
THRESHOLD = pointers.REWRITE_THRESHOLD_MS
NOT_COMMITTED = 1020


# -- reading the store directly ----------------------------------------------------------


@dataclass(frozen=True)
class QueueView:
    """One queue as stored: its pointer record, index entries and job visibilities."""

    record_vis: int | None
    index_vis: list[int]
    ready_vis: list[int]
    scheduled_vis: list[int]


def read_queues(db: Database, queues: list[str]) -> dict[str, QueueView]:
    tr = db.create_transaction()
    try:
        entries: dict[str, list[int]] = {}
        for key, _ in tr.snapshot.get_range(*POINTER_INDEX.range()):
            vis, queue = POINTER_INDEX.unpack(key)
            entries.setdefault(queue, []).append(vis)
        out = {}
        for queue in queues:
            keys = QueueKeys(queue)
            raw = tr.snapshot.get(POINTERS.pack((queue,)))
            out[queue] = QueueView(
                record_vis=None if raw is None else unpack_value(raw)["v"],
                index_vis=entries.get(queue, []),
                ready_vis=[
                    keys.unpack_ready(k)[1] for k, _ in tr.snapshot.get_range(*keys.ready_range())
                ],
                scheduled_vis=[
                    keys.unpack_scheduled(k)[0]
                    for k, _ in tr.snapshot.get_range(*keys.scheduled_range())
                ],
            )
        return out
    finally:
        tr.cancel()


def check_pointer_invariant(db: Database, queues: list[str], now: int, where: str) -> None:
    doubled = db.transact(lambda tr: _queues_with_several_index_entries(tr))
    assert not doubled, f"{where}: queues with more than one pointer-index entry: {doubled}"
    for queue, view in read_queues(db, queues).items():
        context = f"{where}: queue {queue!r} {view}"
        assert len(view.index_vis) <= 1, f"more than one pointer-index entry; {context}"
        if view.record_vis is None:
            assert view.index_vis == [], f"index entry without a pointer record; {context}"
        else:
            assert view.index_vis == [view.record_vis], (
                f"pointer record and index entry disagree; {context}"
            )
        if not (view.ready_vis or view.scheduled_vis):
            continue
        assert view.record_vis is not None, f"a queue holding jobs has no pointer; {context}"
        earliest = min(view.ready_vis + view.scheduled_vis)
        assert view.record_vis <= earliest + THRESHOLD, f"pointer later than its jobs; {context}"
        if view.ready_vis:
            assert view.record_vis <= now + THRESHOLD, f"ready jobs, pointer not due; {context}"


def _queues_with_several_index_entries(tr: Transaction) -> list[str]:
    seen: dict[str, int] = {}
    for key, _ in tr.snapshot.get_range(*POINTER_INDEX.range()):
        _, queue = POINTER_INDEX.unpack(key)
        seen[queue] = seen.get(queue, 0) + 1
    return sorted(queue for queue, count in seen.items() if count > 1)


# -- operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Enqueue:
    queue: int
    delay_ms: int


@dataclass(frozen=True)
class ClaimJobs:
    queue: int
    limit: int


@dataclass(frozen=True)
class Complete:
    pick: int


@dataclass(frozen=True)
class Fail:
    pick: int
    delay_ms: int


@dataclass(frozen=True)
class Collect:
    queue: int
    ahead_ms: int


Op = Enqueue | ClaimJobs | Complete | Fail | Collect


@dataclass(frozen=True)
class Solo:
    op: Op


@dataclass(frozen=True)
class Drain:
    """A consumer empties the queue (waiting out its future jobs); a collector may then mark it."""

    queue: int
    mark: bool


@dataclass(frozen=True)
class Race:
    """Two operations on concurrent transactions; ``prelude`` first drains the first's queue."""

    first: Op
    second: Op
    second_commits_first: bool
    prelude: Drain | None = None


@dataclass(frozen=True)
class Advance:
    ms: int


Step = Solo | Race | Advance | Drain


@dataclass
class Body:
    """One operation's transaction body and what its committed result does to the model."""

    run: Callable[[Transaction], Any]
    done: Callable[[Any], None]


class Harness:
    """Runs operations on a database with a clock advanced explicitly."""

    def __init__(self, db: Database, n_queues: int) -> None:
        self.db = db
        tag = uuid.uuid4().hex[:8]  # the fdb engine shares one keyspace across examples
        self.queues = [f"race-{tag}-{i}" for i in range(n_queues)]
        self.now = T0
        self.held: list[Claim] = []
        self.owners = 0

    def queue(self, index: int) -> str:
        return self.queues[index % len(self.queues)]

    @staticmethod
    def on_queue(op: Op, queue: int) -> Op:
        """``op`` aimed at ``queue`` (a setup op; Complete(-1) takes the newest claim)."""
        return dataclasses.replace(op, queue=queue) if hasattr(op, "queue") else op

    def _drop(self, claim: Claim) -> None:
        if claim in self.held:
            self.held.remove(claim)

    def body(self, op: Op) -> Body | None:
        now = self.now
        if isinstance(op, Enqueue):
            prepared = prepare(self.queue(op.queue), "t", None, delay=op.delay_ms / 1000, now=now)
            return Body(lambda tr: store_new(tr, prepared), lambda _: None)
        if isinstance(op, ClaimJobs):
            queue, token = self.queue(op.queue), uuid.uuid4().hex
            self.owners += 1
            owner = f"c{self.owners}"
            return Body(
                lambda tr: claim_jobs(tr, queue, owner, now, op.limit, LEASE_MS, token),
                lambda claims: self.held.extend(claims),
            )
        if isinstance(op, Collect):
            queue, at = self.queue(op.queue), now + op.ahead_ms
            return Body(lambda tr: pointers.collect(tr, queue, at, 0), lambda _: None)
        if not self.held:
            return None
        claim = self.held[op.pick % len(self.held)]
        if isinstance(op, Complete):
            return Body(
                lambda tr: complete_in(tr, claim, now),
                lambda _: self._drop(claim),
            )
        delay = op.delay_ms
        return Body(
            lambda tr: fail_in(tr, claim, "boom", now, delay_ms=delay),
            lambda _: self._drop(claim),
        )

    def start(self, body: Body) -> tuple[Transaction, Any]:
        tr = self.db.create_transaction()
        try:
            return tr, body.run(tr)
        except quick.LeaseLost as lost:
            return tr, lost

    def settle(self, tr: Transaction, result: Any, body: Body) -> None:
        """Commit ``tr``; on 1020 re-run the body on a fresh transaction until it commits."""
        while True:
            if isinstance(result, quick.LeaseLost):
                tr.cancel()
                break
            try:
                tr.commit()
                break
            except StorageError as error:
                if error.code != NOT_COMMITTED:
                    raise
            tr, result = self.start(body)
        body.done(result)

    def drain(self, index: int, mark: bool) -> None:
        """Finish the queue's held claims, then claim and complete until it is empty."""
        queue = self.queue(index)
        for claim in [c for c in self.held if c.queue_id == queue]:
            self.step(Solo(Complete(self.held.index(claim))))
        for _ in range(100):
            view = read_queues(self.db, [queue])[queue]
            if not (view.ready_vis or view.scheduled_vis):
                break
            if not view.ready_vis:
                self.now = max(self.now, min(view.scheduled_vis))
            before = len(self.held)
            self.step(Solo(ClaimJobs(index, 3)))
            while len(self.held) > before:
                self.step(Solo(Complete(-1)))
        else:
            raise AssertionError(f"queue {queue!r} never drained: {view}")
        if mark:
            self.step(Solo(Collect(index, 0)))

    def step(self, step: Step) -> None:
        if isinstance(step, Advance):
            self.now += step.ms
            return
        if isinstance(step, Drain):
            self.drain(step.queue, step.mark)
            return
        if isinstance(step, Solo):
            body = self.body(step.op)
            if body is not None:
                self.settle(*self.start(body), body)
            return
        if step.prelude is not None:
            self.step(step.prelude)
        bodies = [self.body(step.first), self.body(step.second)]
        started = [(b, *self.start(b)) for b in bodies if b is not None]
        if step.second_commits_first:
            started.reverse()
        for body, tr, result in started:
            self.settle(tr, result, body)


#: Starting states a queue can be put in before the script runs (solo, not raced).
SETUPS: dict[str, list[Op]] = {
    "fresh": [],
    "ready": [Enqueue(0, 0)],
    "delayed": [Enqueue(0, 5_000)],
    "leased": [Enqueue(0, 0), ClaimJobs(0, 1)],
    "drained": [Enqueue(0, 0), ClaimJobs(0, 1), Complete(-1)],
    "marked-empty": [Enqueue(0, 0), ClaimJobs(0, 1), Complete(-1), Collect(0, 0)],
}


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Pick a strategy with the given weights (``one_of`` does not weigh repeated branches)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(range(len(table))).flatmap(lambda i: table[i])


def ops_on(queue: st.SearchStrategy[int]) -> st.SearchStrategy[Op]:
    return weighted(
        (3, st.builds(Enqueue, queue, st.sampled_from([0, 0, 100, 300, 5_000, 60_000]))),
        (2, st.builds(ClaimJobs, queue, st.integers(1, 3))),
        (1, st.builds(Complete, st.integers(0, 7))),
        (1, st.builds(Fail, st.integers(0, 7), st.sampled_from([0, 100, 1_000, 20_000]))),
        (3, st.builds(Collect, queue, st.sampled_from([0, 1, 100_000]))),
    )


queue_index = st.integers(0, 2)
#: A race pits two operations on one queue against each other (the pointer protocol is per
#: queue), often right after the queue was drained, where the collection race lives.
races = queue_index.flatmap(
    lambda q: st.builds(
        Race,
        ops_on(st.just(q)),
        ops_on(st.just(q)),
        st.booleans(),
        st.sampled_from([None, Drain(q, False), Drain(q, True)]),
    )
)
steps: st.SearchStrategy[Step] = weighted(
    (4, races),
    (1, st.builds(Solo, ops_on(queue_index))),
    (1, st.builds(Advance, st.sampled_from([1, 200, 1_000, 11_000, 40_000]))),
    (2, st.builds(Drain, queue_index, st.booleans())),
)


@settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    setups=st.lists(st.sampled_from(sorted(SETUPS)), min_size=2, max_size=3),
    script=st.lists(steps, min_size=15, max_size=40),
)
def test_pointer_index_survives_interleaved_producers_consumers_and_collectors(
    exact_db: Database, setups: list[str], script: list[Step]
) -> None:
    harness = Harness(exact_db, len(setups))
    for queue, setup in enumerate(setups):
        for op in SETUPS[setup]:
            harness.step(Solo(harness.on_queue(op, queue)))
    check_pointer_invariant(exact_db, harness.queues, harness.now, f"after setup {setups}")
    for number, step in enumerate(script):
        harness.step(step)
        check_pointer_invariant(
            exact_db, harness.queues, harness.now, f"after step {number} ({step})"
        )


# -- the specific race, deterministically ------------------------------------------------


def _commit_retrying(db: Database, tr: Transaction, body: Callable[[Transaction], Any]) -> None:
    while True:
        try:
            tr.commit()
            return
        except StorageError as error:
            if error.code != NOT_COMMITTED:
                raise
        tr = db.create_transaction()
        body(tr)


def _empty_but_pointed(db: Database, queue: str, now: int) -> None:
    """A queue whose only job ran: its pointer outlives it."""
    old = prepare(queue, "t", "old", now=now)
    db.transact(lambda tr: store_new(tr, old))
    (claim,) = quick.claim(db, queue, "w", now_ms=now)
    quick.complete(db, claim)
    counts = quick.queue_counts(db, queue)
    assert sum(counts.values()) == 0
    assert _pointer_vis(db, queue) is not None


def _pointer_vis(db: Database, queue: str) -> int | None:
    view = read_queues(db, [queue])[queue]
    return view.record_vis


@pytest.mark.parametrize("enqueue_commits_first", [True, False], ids=["enqueue-first", "gc-first"])
@pytest.mark.parametrize("stage", ["mark-empty", "delete"])
@pytest.mark.parametrize("collector", ["collect", "claim"])
def test_pointer_gc_racing_an_enqueue_leaves_the_job_pointed(
    exact_db: Database, enqueue_commits_first: bool, stage: str, collector: str
) -> None:
    db = exact_db
    queue = f"gc-{uuid.uuid4().hex[:8]}"
    now = T0
    _empty_but_pointed(db, queue, now)
    if stage == "delete":
        # Mark the pointer empty first, so the racing collector's body deletes it.
        now += 1
        db.transact(lambda tr: pointers.collect(tr, queue, now, 0))
        assert _pointer_vis(db, queue) is not None
        now += pointers.EMPTY_GRACE_MS
    now += 1

    job = prepare(queue, "t", "new", now=now)

    def enqueue_body(tr: Transaction) -> Any:
        return store_new(tr, job)

    gc_claims: list[Claim] = []

    def gc_body(tr: Transaction) -> Any:
        if collector == "collect":
            return pointers.collect(tr, queue, now, 0)
        gc_claims[:] = claim_jobs(tr, queue, "gc", now, 1, LEASE_MS, uuid.uuid4().hex)
        return list(gc_claims)

    t_enqueue, t_gc = db.create_transaction(), db.create_transaction()
    enqueue_body(t_enqueue)
    gc_result = gc_body(t_gc)
    # Both bodies read the same snapshot: the collector saw an empty queue.
    if collector == "collect":
        assert gc_result is (stage == "delete")
    else:
        assert gc_result == []
    pairs = [(t_enqueue, enqueue_body), (t_gc, gc_body)]
    if not enqueue_commits_first:
        pairs.reverse()
    for tr, body in pairs:
        _commit_retrying(db, tr, body)

    check_pointer_invariant(db, [queue], now, "after the race")
    if gc_claims:
        # The claim lost the race, was retried, and found the new job: it holds it.
        assert [c.job_id for c in gc_claims] == [job.job.id]
        now += LEASE_MS  # its lease runs out: the job must be found again
    due = [q for _, q in db.transact(lambda tr: pointers.scan(tr.snapshot, now, limit=1000))]
    assert queue in due
    claims = quick.claim(db, queue, "w", now_ms=now)
    assert [c.job_id for c in claims] == [job.job.id]


# -- a held claim after its job was put back (found while building the harness above) -----


def _put_back_then_promoted(db: Database, put_back: str) -> Claim:
    """A claim whose job was put back, then made ready again by another consumer's claim."""
    queue = f"putback-{uuid.uuid4().hex[:8]}"
    job = prepare(queue, "t", "job", now=T0)
    db.transact(lambda tr: store_new(tr, job))
    (held,) = quick.claim(db, queue, "a", now_ms=T0)
    if put_back == "release":
        quick.release(db, held, now_ms=T0)
    elif put_back == "fail":
        assert quick.fail(db, held, "boom", delay_ms=1, now_ms=T0) == "requeued"
    else:
        quick.snooze(db, held, 0.001, now_ms=T0)
    urgent = prepare(queue, "t", "urgent", priority=0, now=T0 + 5)
    db.transact(lambda tr: store_new(tr, urgent))
    (other,) = quick.claim(db, queue, "b", limit=1, now_ms=T0 + 5)
    assert other.payload == "urgent"
    assert quick.job_state(db, held.job_id) is JobState.READY
    return held


PUT_BACK_DIAGNOSIS = (
    "put-backs (release, fail, snooze) keep the job's token and clear its owner, but "
    "leases._held() refuses only a job in state SCHEDULED: once the job is READY again "
    "(at once after release; after any claim's promotion after fail/snooze) the old "
    "claim passes the token fence"
)


@pytest.mark.parametrize("put_back", ["release", "fail", "snooze"])
def test_lease_claim_put_back_cannot_complete_the_job_later(db: Database, put_back: str) -> None:
    held = _put_back_then_promoted(db, put_back)
    with pytest.raises(quick.LeaseLost):
        quick.complete(db, held)
    assert quick.job_state(db, held.job_id) is JobState.READY


@pytest.mark.parametrize("put_back", ["release", "fail", "snooze"])
def test_lease_claim_put_back_cannot_heartbeat_the_job_later(db: Database, put_back: str) -> None:
    held = _put_back_then_promoted(db, put_back)
    with pytest.raises(quick.LeaseLost):
        quick.heartbeat(db, held, now_ms=T0 + 10)
    assert quick.job_state(db, held.job_id) is JobState.READY
