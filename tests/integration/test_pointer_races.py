"""The pointer index under concurrent producers, consumers and collectors (QuiCK's GC race).

Operations run at the *transaction* level: two operations open transactions on the same
database, both bodies run (so both read the same snapshot), then they commit in a drawn
order; a commit refused with 1020 is retried on a fresh transaction, re-running its body,
as the retry loop would. After every step the store is read directly and the pointer
invariant is checked (both in :mod:`tests.integration.pointer_store`, whose docstring
states the invariant and its tolerance).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import quick
from keyspace.errors import StorageError
from keyspace.layout import POINTER_INDEX
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries
from quick import pointers
from quick.claim_rounds import claim_round
from quick.claiming import claim_jobs
from quick.enqueueing import prepare, store_new
from quick.jobs import Claim
from quick.leases import complete_in, fail_in
from tests.integration.pointer_store import (
    LEASE_MS,
    NOT_COMMITTED,
    T0,
    check_pointer_invariant,
    read_queues,
)

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
class Round:
    """A consumer's claim round over every due queue (reads issued together when it
    visits several), from the entry ``seed`` draws."""

    limit: int
    seed: int


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


Op = Enqueue | ClaimJobs | Round | Complete | Fail | Collect


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
        # Earlier examples' queues leave the pointer index, so this example's claim
        # rounds visit its own queues (those are all the invariant is checked on).
        db.transact(lambda tr: tr.clear_range(*POINTER_INDEX.range()))
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
        if isinstance(op, Round):
            self.owners += 1
            owner, tries = f"c{self.owners}", Tries()
            return Body(
                lambda tr: claim_round(
                    tr,
                    owner,
                    now,
                    limit=op.limit,
                    lease_ms=LEASE_MS,
                    tries=tries,
                    rng=random.Random(op.seed),
                    watch=False,
                ),
                lambda found: self.held.extend(found.claims),
            )
        if isinstance(op, Collect):
            queue, at = self.queue(op.queue), now + op.ahead_ms
            return Body(lambda tr: pointers.collect_empty_pointer(tr, queue, at, 0), lambda _: None)
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
        (2, st.builds(Round, st.integers(1, 4), st.integers(0, 7))),
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
# A round that read two queues' indexes together, raced by a job enqueued into one of
# them that commits first: the round must conflict (its claim covered that index).
@example(setups=["ready", "ready"], script=[Race(Round(4, 0), Enqueue(0, 0), True)])
@example(setups=["ready", "ready"], script=[Race(Round(4, 0), Enqueue(1, 0), True)])
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
