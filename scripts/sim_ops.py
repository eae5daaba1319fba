"""The simulation's operations on the store, and its model of every job it enqueued.

:class:`Operations` is the half of :class:`simulate.Simulation` that acts: each
operation draws its arguments from the seed's ``rng``, calls the real code of quick at
the simulated time ``now``, records in :attr:`Operations.jobs` what the call must have
done (a :class:`ModelJob` per job), and returns a short description for the report.
What it finds wrong on the spot goes to :attr:`Operations.problems`; the driver
(:mod:`simulate`) checks the store against the model after every step.
"""

from __future__ import annotations

import random
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sim_keys import KeyLimitsSim
from sim_store import APP
from sim_workflows import QUEUE as WF_QUEUE
from sim_workflows import Workflows

import quick
import quick.checking
from keyspace.protocol import Database
from keyspace.retry import Tries
from quick.app import JobConfig
from quick.claim_rounds import claim_round
from quick.jobs import Claim
from quick.outcomes import Attempt, Outcome, settle_batch

__all__ = ["CONSUMERS", "PENDING", "QUEUES", "ModelJob", "Operations"]

QUEUES = ("q0", "q1", "q2")
CONSUMERS = ("c0", "c1", "c2")
_ONE = struct.pack("<q", 1)
PENDING = "pending"


@dataclass
class ModelJob:
    """What the simulator knows of one job it enqueued."""

    queue: str
    status: str = PENDING  # or completed, dead, cancelled, discarded, purged
    unique: str | None = None
    ordered: bool = False  # enqueued in a user transaction with an app order record
    effect: int = 0  # transactional completions the simulator saw commit
    token: str | None = None  # the newest lease token handed to the simulator
    cancelling: bool = False  # cancelled while leased: whatever settles it, it ends cancelled
    result: Any = None  # what the completing call stored as the job's result


class Operations:
    """The operations of one seed's simulation, over the state the driver sets up."""

    db: Database
    rng: random.Random
    now: int
    jobs: dict[str, ModelJob]
    held: dict[str, list[Claim]]
    config: JobConfig
    problems: list[str]
    ids: int
    wf: Workflows
    keyed: KeyLimitsSim

    # -- helpers --------------------------------------------------------------------------

    def new_id(self) -> str:
        self.ids += 1
        return f"{self.rng.getrandbits(40):010x}-{self.ids}"

    def enqueued(self, wanted: str, got: str, queue: str, unique: str | None) -> None:
        """Record a job an enqueue returned: ours, or the holder of its unique key."""
        if got == wanted:
            self.jobs[wanted] = ModelJob(queue, unique=unique)
            return
        holder = self.jobs.get(got)
        if holder is None or holder.status != PENDING or holder.unique != unique:
            status = "unknown" if holder is None else holder.status
            self.problems.append(
                f"enqueue with unique key {unique!r} answered {got}, which is {status}"
            )

    def took(self, consumer: str, claims: list[Claim]) -> None:
        """Record claims handed to ``consumer``: each must name a pending job."""
        for claim in claims:
            if claim.queue_id == WF_QUEUE:  # a workflow step, claimed by a round
                self.wf.held.append(claim)
                self.wf.dirty = True
                continue
            model = self.jobs.get(claim.job_id)
            if model is None or model.status != PENDING:
                status = "unknown" if model is None else model.status
                self.problems.append(f"claimed job {claim.job_id}, which is {status}")
                continue
            model.token = claim.token
            self.held[consumer].append(claim)
        self.keyed.took([claim.job_id for claim in claims])

    def pick_claim(self) -> tuple[str, Claim] | None:
        busy = [c for c in CONSUMERS if self.held[c]]
        if not busy:
            return None
        consumer = self.rng.choice(busy)
        return consumer, self.rng.choice(self.held[consumer])

    def drop(self, consumer: str, claim: Claim) -> None:
        if claim in self.held[consumer]:
            self.held[consumer].remove(claim)

    def settled(self, claim: Claim, status: str, *, renewed: bool = False) -> None:
        """A settlement of ``claim`` committed (or its lease was ``renewed``): fenced, so
        only the newest claim may. A job cancelled while leased ends cancelled, however
        its holder settles it."""
        model = self.jobs[claim.job_id]
        if model.token != claim.token or model.status != PENDING:
            self.problems.append(
                f"a stale claim of job {claim.job_id} (token {claim.token[:8]}) settled it "
                f"as {status}; the job is {model.status}, newest token {str(model.token)[:8]}"
            )
        model.status = "cancelled" if model.cancelling and not renewed else status

    def job_spec(self) -> dict[str, Any]:
        job_id = self.new_id()
        return {
            "job_id": job_id,
            "limit_keys": self.keyed.pick(job_id),
            "queue_id": self.rng.choice(QUEUES),
            "topic": "t",
            "payload": {"n": self.ids},
            "priority": self.rng.choice((10, 100, 100)),
            "delay": self.rng.choice((None, None, None, 0.1, 2.0, 20.0)),
            "max_attempts": self.rng.choice((None, 1, 2, 3)),
            "unique_key": self.rng.choice((None, None, None, None, "u0", "u1")),
        }

    def lease_ms(self) -> int:
        return self.rng.choice((2_000, 5_000, 10_000))

    # -- operations (each returns a short description for the report) ----------------------

    def setup(self) -> str:
        quick.schedule(self.db, "tick", "* * * * *", "q0", "t", {"cron": True})
        return "tick every minute on q0"

    def enqueue(self) -> str:
        spec = self.job_spec()
        got = quick.enqueue(self.db, **spec)
        self.enqueued(spec["job_id"], got, spec["queue_id"], spec["unique_key"])
        return f"{spec['job_id']} on {spec['queue_id']} delay={spec['delay']}"

    def enqueue_many(self) -> str:
        specs = [self.job_spec() for _ in range(self.rng.randint(1, 4))]
        got = quick.enqueue_many(self.db, specs)
        for spec, job_id in zip(specs, got, strict=True):
            self.enqueued(spec["job_id"], job_id, spec["queue_id"], spec["unique_key"])
        return ",".join(s["job_id"] for s in specs)

    def enqueue_in_transaction(self) -> str:
        spec = self.job_spec()
        spec["unique_key"] = None

        def order(tr: Any) -> str:
            job_id: str = quick.enqueue(tr, **spec)
            tr.set(APP.pack(("order", job_id)), b"1")
            return job_id

        got = self.db.transact(order)
        self.enqueued(spec["job_id"], got, spec["queue_id"], None)
        self.jobs[got].ordered = True
        return f"{got} on {spec['queue_id']} with an app order"

    def enqueue_again(self) -> str:
        """Enqueue a known job id again (on any queue): nothing is added and the id comes
        back, unless the job was purged, which frees its id for a new job."""
        job_id = self._pick_job((PENDING, "completed", "dead", "cancelled", "purged"))
        if job_id is None:
            return "no job"
        model, queue = self.jobs[job_id], self.rng.choice(QUEUES)
        got = quick.enqueue(self.db, queue, "t", {"again": True}, job_id=job_id)
        if got != job_id:
            self.problems.append(f"enqueue of known id {job_id} answered {got}")
        if model.status == "purged":  # app records of the old job stay; keep counting them
            self.jobs[job_id] = ModelJob(queue, ordered=model.ordered, effect=model.effect)
        return f"{job_id} ({model.status}) on {queue}"

    def claim(self) -> str:
        consumer, queue = self.rng.choice(CONSUMERS), self.rng.choice(QUEUES)
        claims = quick.claim(
            self.db,
            queue,
            consumer,
            limit=self.rng.randint(1, 4),
            lease_ms=self.lease_ms(),
            now_ms=self.now,
        )
        self.took(consumer, claims)
        return f"{consumer} on {queue}: {[c.job_id for c in claims]}"

    def claim_round(self) -> str:
        consumer = self.rng.choice(CONSUMERS)
        tries = Tries(token=uuid.UUID(int=self.rng.getrandbits(128)).hex)
        limit, lease_ms = self.rng.randint(1, 6), self.lease_ms()
        order = random.Random(self.rng.getrandbits(32))
        found = self.db.transact(
            lambda tr, tries: claim_round(
                tr, consumer, self.now, limit=limit, lease_ms=lease_ms, tries=tries,
                rng=order, watch=False,
            ),
            tries,  # an argument, so the retry loop tells it of a commit result unknown
        )  # fmt: skip
        self.took(consumer, found.claims)
        return f"{consumer}: {[c.job_id for c in found.claims]}"

    def heartbeat(self) -> str:
        picked = self.pick_claim()
        if picked is None:
            return "nothing held"
        consumer, claim = picked
        try:
            renewed = quick.heartbeat(self.db, claim, lease_ms=self.lease_ms(), now_ms=self.now)
        except quick.LeaseLost:
            self.drop(consumer, claim)
            return f"{consumer} {claim.job_id}: lost"
        self.settled(claim, PENDING, renewed=True)
        if renewed.cancel_requested != self.jobs[claim.job_id].cancelling:
            self.problems.append(f"a renewal of {claim.job_id} misses its cancel mark")
        self.held[consumer][self.held[consumer].index(claim)] = renewed
        return f"{consumer} {claim.job_id} until {renewed.lease_until_ms}"

    def settle_one(self, act: Callable[[Claim], tuple[str, str]]) -> str:
        """Settle one held claim with ``act`` (which returns the job's new model status
        and a description); a lost lease changes nothing but the consumer's hand."""
        picked = self.pick_claim()
        if picked is None:
            return "nothing held"
        consumer, claim = picked
        self.drop(consumer, claim)
        try:
            status, what = act(claim)
        except quick.LeaseLost:
            return f"{consumer} {claim.job_id}: lost"
        self.settled(claim, status)
        return f"{consumer} {claim.job_id} {what}"

    def result_for(self, claim: Claim) -> Any:
        """A result to complete ``claim`` with: none, or one the model can recognise."""
        return self.rng.choice((None, f"r:{claim.job_id}", [claim.attempt, {"b": b"\x00"}]))

    def complete(self) -> str:
        def act(claim: Claim) -> tuple[str, str]:
            value = self.result_for(claim)
            done = quick.complete(self.db, claim, result=value, now_ms=self.now)
            self.jobs[claim.job_id].result = value
            return "completed", f"{done} result={value!r}"

        return self.settle_one(act)

    def complete_in_transaction(self) -> str:
        def act(claim: Claim) -> tuple[str, str]:
            effect = APP.pack(("fx", claim.job_id))
            value = self.result_for(claim)

            def finish(tr: Any) -> bool:
                done = quick.complete(tr, claim, result=value, now_ms=self.now)
                if done:
                    tr.add(effect, _ONE)
                return done

            self.db.transact(finish)
            self.jobs[claim.job_id].effect += 1
            self.jobs[claim.job_id].result = value
            return "completed", "with an app effect"

        return self.settle_one(act)

    def fail(self) -> str:
        def act(claim: Claim) -> tuple[str, str]:
            delay = self.rng.choice((0, 300, 3_000))
            got = quick.fail(self.db, claim, "boom", delay_ms=delay, now_ms=self.now)
            ends = {"requeued": PENDING, "dead_lettered": "dead"}.get(got, str(got))
            return ends, f"delay={delay}: {got}"

        return self.settle_one(act)

    def snooze(self) -> str:
        def act(claim: Claim) -> tuple[str, str]:
            seconds = self.rng.choice((0.0, 0.5, 5.0))
            quick.snooze(self.db, claim, seconds, now_ms=self.now)
            return PENDING, f"for {seconds}s"

        return self.settle_one(act)

    def release(self) -> str:
        def act(claim: Claim) -> tuple[str, str]:
            quick.release(self.db, claim, now_ms=self.now)
            return PENDING, "released"

        return self.settle_one(act)

    def settle_batch(self) -> str:
        """A consumer's group commit of part of its batch; maybe it crashes after it."""
        consumer = self.rng.choice(CONSUMERS)
        batch = self.held[consumer][: self.rng.randint(1, 5)]
        if not batch:
            return f"{consumer} holds nothing"
        errors: tuple[BaseException | None, ...] = (
            None, None, RuntimeError("boom"), quick.Snooze(1), quick.Discard("no"),
        )  # fmt: skip
        attempts = [
            Attempt(c, self.config, self.rng.choice(errors), self.result_for(c)) for c in batch
        ]
        outcomes = settle_batch(self.db, attempts)
        status = {
            Outcome.COMPLETED: "completed",
            Outcome.REQUEUED: PENDING,
            Outcome.SNOOZED: PENDING,
            Outcome.DEAD_LETTERED: "dead",
            Outcome.DISCARDED: "discarded",
            Outcome.CANCELLED: "cancelled",
        }
        for attempt, outcome in zip(attempts, outcomes, strict=True):
            self.drop(consumer, attempt.claim)
            if outcome is not Outcome.LEASE_LOST:
                if self.jobs[attempt.claim.job_id].cancelling != (outcome is Outcome.CANCELLED):
                    self.problems.append(f"{attempt.claim.job_id} settled as {outcome.value}")
                self.settled(attempt.claim, status[outcome])
                if outcome is Outcome.COMPLETED:
                    self.jobs[attempt.claim.job_id].result = attempt.output
        crashed = self.rng.random() < 0.3
        if crashed:
            self.held[consumer] = []
        return f"{consumer}: {[o.value for o in outcomes]}{' then crashed' if crashed else ''}"

    def crash(self) -> str:
        consumer = self.rng.choice(CONSUMERS)
        lost = len(self.held[consumer])
        self.held[consumer] = []
        return f"{consumer} abandons {lost} claims"

    def _pick_job(self, statuses: tuple[str, ...]) -> str | None:
        ids = [i for i, m in self.jobs.items() if m.status in statuses]
        return self.rng.choice(sorted(ids)) if ids else None

    def cancel(self) -> str:
        job_id = self._pick_job((PENDING, PENDING, "completed", "cancelled"))
        if job_id is None:
            return "no job"
        model = self.jobs[job_id]
        cancelled = quick.cancel(self.db, job_id)
        if cancelled and model.status == PENDING:
            stored = quick.get_job(self.db, job_id)  # leased: marked, it ends when settled
            if stored is not None and stored.cancel_requested:
                model.cancelling = True
                return f"{job_id} (running): marked"
            model.status = "cancelled"
        elif cancelled != (model.status in (PENDING, "cancelled")):
            self.problems.append(f"cancel({job_id}) answered {cancelled}; it was {model.status}")
        return f"{job_id} ({model.status}): {cancelled}"

    def requeue_dead(self) -> str:
        job_id = self._pick_job(("dead",))
        if job_id is None:
            return "no dead letter"
        model = self.jobs[job_id]
        try:
            quick.requeue_dead(self.db, model.queue, job_id)
        except quick.InvalidArgument as refused:
            return f"{job_id}: {refused}"
        model.status, model.token = PENDING, None
        return job_id

    def purge_dead(self) -> str:
        job_id = self._pick_job(("dead",))
        if job_id is None:
            return "no dead letter"
        model = self.jobs[job_id]
        purged = quick.purge_dead(self.db, model.queue, job_id)
        if purged != 1:
            self.problems.append(f"purge_dead({job_id}) purged {purged}, expected 1")
        model.status = "purged"
        return job_id

    def activate_cron(self) -> str:
        """Fire the due tick; every job it enqueued must be in the answer, including one
        a try enqueued before its commit was reported unknown (a job in the store but
        not in the answer fails as "stored but was never enqueued")."""
        fired = quick.activate_due(self.db, now=self.now)
        for job_id in fired:
            if job_id not in self.jobs:
                self.jobs[job_id] = ModelJob("q0")
        return f"{fired}"

    def check_deep(self) -> str:
        """An operator's ``quick check --deep`` (no repair): it must find no problem."""
        report = quick.checking.check_deep(self.db)
        for problem in report.problems:
            self.problems.append(
                f"check --deep: {problem.kind} at {problem.key!r}: {problem.detail}"
            )
        return f"{report.keys} keys, {len(report.problems)} problems"

    def set_key_limits(self) -> str:
        return self.keyed.set_limits()

    def wf_start(self) -> str:
        return self.wf.start()

    def wf_work(self) -> str:
        return self.wf.work()

    def wf_steer(self) -> str:
        return self.wf.steer()

    def advance(self) -> str:
        ms = self.rng.randint(0, 1_500)
        self.now += ms
        return f"+{ms} ms"

    def jump(self) -> str:
        """Past every lease (and, now and then, past a cron tick)."""
        ms = self.rng.choice((10_001, 30_000, 61_000))
        self.now += ms
        return f"+{ms} ms"
