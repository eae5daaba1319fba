"""A deterministic simulation of the queue at scale: random schedules of producers,
consumers, crashes, operators, cron and injected faults, with invariants after every step.

Usage::

    python scripts/simulate.py --seeds 10000           # seeds 0..9999, no violation expected
    python scripts/simulate.py --seed 4711              # replay one seed exactly
    python scripts/simulate.py --list-breaks            # the deliberate protocol breakages
    python scripts/simulate.py --break no-fencing --seeds 200   # must fail, naming seed and step

Each seed drives the real code of quick on a fresh embedded (sqlite) store, wrapped in
the fault injector for most seeds (``?faults=...&seed=SEED``), on a simulated clock:
every operation that takes ``now_ms``/``now`` gets the simulated time, and the few that
read the wall clock (``enqueue``, ``settle_batch``, ``cancel``, ``schedule``) see it too,
because the simulation rebinds ``quick.jobs.now_ms`` for the run. Nothing sleeps: the
retry loop's backoff is skipped. Every random choice, job id and lease token comes from
``random.Random(seed)``, so a seed replays exactly.

After every step the whole store is read (:mod:`sim_store`) and checked against the
store's own invariants and against the simulator's model of every job it enqueued.
A failure prints the seed, the step and the operation, and exits 1.

See ``docs/simulation.md`` for the operations, the invariants and the measured figures.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import struct
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim_breaks import BREAKS, applied, rebind, swap
from sim_store import APP, Snapshot, check_store, read_store
from sim_workflows import QUEUE as WF_QUEUE
from sim_workflows import Workflows

import keyspace.retry
import quick
import quick.checking
import quick.claiming
import quick.jobs
import workflow.engine
from quick.app import JobConfig
from quick.claiming import RoundTries, claim_round
from quick.jobs import Claim, JobState
from quick.outcomes import Attempt, Outcome, settle_batch

__all__ = ["Violation", "Result", "simulate_seed", "run_seeds", "main"]

T0 = 1_800_000_000_000
QUEUES = ("q0", "q1", "q2")
CONSUMERS = ("c0", "c1", "c2")
#: Faults injected into commits on most seeds (the rest run on the plain engine).
FAULTS = "not_committed:0.04,commit_unknown_result:0.05,transaction_too_old:0.02"
FAULTY_SHARE = 0.7
_ONE = struct.pack("<q", 1)
PENDING = "pending"
#: Every this many steps an operator runs ``quick check --deep`` (read-only). At fixed
#: steps rather than drawn by weight, so it draws nothing from the seed's random stream
#: and every seed's history (and each break's seeds to catch) stays as it was.
DEEP_CHECK_EVERY = 15


class Violation(Exception):
    """An invariant failed (or quick raised what it must not) at one step of one seed."""

    def __init__(self, seed: int, step: int, op: str, problems: list[str]) -> None:
        self.seed, self.step, self.op, self.problems = seed, step, op, problems
        shown = "\n  ".join(problems[:8]) + ("\n  ..." if len(problems) > 8 else "")
        super().__init__(f"seed {seed} step {step} op {op}:\n  {shown}")


@dataclass
class ModelJob:
    """What the simulator knows of one job it enqueued."""

    queue: str
    status: str = PENDING  # or completed, dead, cancelled, discarded, purged
    unique: str | None = None
    ordered: bool = False  # enqueued in a user transaction with an app order record
    effect: int = 0  # transactional completions the simulator saw commit
    token: str | None = None  # the newest lease token handed to the simulator


@dataclass
class Result:
    """One seed's run: steps taken, operations by kind, faults injected."""

    seed: int
    steps: int
    ops: Counter[str] = field(default_factory=Counter)
    faults: dict[int, int] = field(default_factory=dict)


@contextlib.contextmanager
def _simulated_world(clock: Callable[[], int], rng: random.Random) -> Iterator[None]:
    """Rebind quick's wall clock to ``clock``, its lease tokens to ``rng``, and the retry
    loop's sleep to nothing; seed the global ``random`` (retry jitter, backoff) from ``rng``."""
    undo: list[tuple[Any, str, Any]] = []
    rebind(quick.jobs.now_ms, clock, undo)
    tokens = SimpleNamespace(uuid4=lambda: uuid.UUID(int=rng.getrandbits(128), version=4))
    swap(quick.claiming, "uuid", tokens, undo)
    swap(workflow.engine, "uuid", tokens, undo)
    swap(keyspace.retry, "time", SimpleNamespace(sleep=lambda seconds: None), undo)
    state = random.getstate()
    random.seed(rng.getrandbits(64))
    try:
        yield
    finally:
        random.setstate(state)
        for module, attr, value in reversed(undo):
            setattr(module, attr, value)


class Simulation:
    """One seed: a store, a clock, a model, and the operations that drive them."""

    def __init__(self, seed: int, path: Path, steps: int) -> None:
        self.seed = seed
        self.steps = steps
        self.rng = random.Random(seed)
        self.now = T0 + self.rng.randrange(86_400_000)
        faulty = self.rng.random() < FAULTY_SHARE
        url = f"sqlite:///{path}" + (f"?faults={FAULTS}&seed={seed}" if faulty else "")
        self.db = quick.open(url)
        self.jobs: dict[str, ModelJob] = {}
        self.held: dict[str, list[Claim]] = {c: [] for c in CONSUMERS}
        self.config = JobConfig(topic="t", handler=lambda payload, meta: None, max_attempts=3)
        self.result = Result(seed, 0)
        self.problems: list[str] = []
        self.ids = 0
        self.wf = Workflows(self.db, self.rng, lambda: self.now)
        self.ops: list[tuple[int, Callable[[], str]]] = [
            (10, self.enqueue),
            (4, self.enqueue_many),
            (5, self.enqueue_in_transaction),
            (2, self.enqueue_again),
            (8, self.claim),
            (6, self.claim_round),
            (4, self.heartbeat),
            (6, self.complete),
            (5, self.complete_in_transaction),
            (4, self.fail),
            (2, self.snooze),
            (2, self.release),
            (5, self.settle_batch),
            (2, self.crash),
            (2, self.cancel),
            (2, self.requeue_dead),
            (1, self.purge_dead),
            (2, self.activate_cron),
            (3, self.wf_start),
            (6, self.wf_work),
            (3, self.wf_steer),
            (5, self.advance),
            (2, self.jump),
        ]
        self.weights = [w for w, _ in self.ops]

    # -- running -------------------------------------------------------------------------

    def run(self) -> Result:
        """Set up, then take ``steps`` random steps, checking after each; raises Violation."""
        with _simulated_world(lambda: self.now, self.rng):
            try:
                self._guard(0, "schedule cron", self.setup)
                for step in range(1, self.steps + 1):
                    (op,) = self.rng.choices([fn for _, fn in self.ops], self.weights)
                    self._guard(step, op.__name__, op)
                    if step % DEEP_CHECK_EVERY == 0:
                        self._guard(step, "check_deep", self.check_deep)
                    self.result.steps = step
            finally:
                injected = getattr(self.db, "injected", None)
                self.result.faults = dict(injected) if injected else {}
                self.db.close()
        return self.result

    def _guard(self, step: int, name: str, op: Callable[[], str]) -> None:
        """Run one operation and the invariants; any failure becomes a Violation."""
        label = name
        try:
            label = f"{name}({op()})"
            self.result.ops[name] += 1
            problems = self.problems + self.check()
        except Violation:
            raise
        except Exception as error:
            where = traceback.extract_tb(error.__traceback__)[-1]
            problems = [
                f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})",
                *self.problems,
            ]
        if problems:
            raise Violation(self.seed, step, label, problems)

    def check(self) -> list[str]:
        """The store's invariants and the model's, on one snapshot."""
        snap = read_store(self.db)
        return check_store(snap, self.now) + self.check_model(snap) + self.wf.check()

    def check_model(self, snap: Snapshot) -> list[str]:
        """No job lost or duplicated; effects applied exactly once; leases all accounted for."""
        out = []
        for job_id, model in self.jobs.items():
            entry = snap.directory.get(job_id) or {}
            if model.status == PENDING:
                job = snap.jobs.get(job_id)
                if job is None or job.queue != model.queue:
                    out.append(f"job {job_id} is pending in the model but not queued ({entry})")
                elif job.state is JobState.LEASED and job.token != model.token:
                    out.append(f"job {job_id} is leased under a token no claim returned")
            elif model.status == "dead":
                if snap.dead.get(job_id) != model.queue or job_id in snap.jobs:
                    out.append(f"job {job_id} was dead-lettered but is not (only) a dead letter")
            elif model.status == "purged":
                if job_id in snap.jobs or job_id in snap.dead or job_id in snap.directory:
                    out.append(f"job {job_id} was purged but is still stored")
            elif job_id in snap.jobs or job_id in snap.dead or entry.get("s") != model.status:
                out.append(f"job {job_id} is {model.status} in the model; directory says {entry}")
            if snap.effects.get(job_id, 0) != model.effect:
                out.append(
                    f"job {job_id}: its transactional effect was applied "
                    f"{snap.effects.get(job_id, 0)} times, expected {model.effect}"
                )
            if model.ordered != (job_id in snap.orders):
                out.append(f"job {job_id}: enqueued with its app record = {model.ordered}")
        stored = {i for i, job in snap.jobs.items() if job.queue != WF_QUEUE}
        stored |= {i for i, queue in snap.dead.items() if queue != WF_QUEUE}
        for job_id in stored - set(self.jobs):
            out.append(f"job {job_id} is stored but was never enqueued")
        for job_id in snap.orders - set(self.jobs):
            out.append(f"app order {job_id} names no enqueued job")
        return out

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

    def pick_claim(self) -> tuple[str, Claim] | None:
        busy = [c for c in CONSUMERS if self.held[c]]
        if not busy:
            return None
        consumer = self.rng.choice(busy)
        return consumer, self.rng.choice(self.held[consumer])

    def drop(self, consumer: str, claim: Claim) -> None:
        if claim in self.held[consumer]:
            self.held[consumer].remove(claim)

    def settled(self, claim: Claim, status: str) -> None:
        """A settlement of ``claim`` committed: fenced, so only the newest claim may."""
        model = self.jobs[claim.job_id]
        if model.token != claim.token or model.status != PENDING:
            self.problems.append(
                f"a stale claim of job {claim.job_id} (token {claim.token[:8]}) settled it "
                f"as {status}; the job is {model.status}, newest token {str(model.token)[:8]}"
            )
        model.status = status

    def job_spec(self) -> dict[str, Any]:
        return {
            "queue_id": self.rng.choice(QUEUES),
            "topic": "t",
            "payload": {"n": self.ids},
            "priority": self.rng.choice((10, 100, 100)),
            "delay": self.rng.choice((None, None, None, 0.1, 2.0, 20.0)),
            "max_attempts": self.rng.choice((None, 1, 2, 3)),
            "job_id": self.new_id(),
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
            job_id = quick.enqueue(tr, **spec)
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
        tries = RoundTries(token=uuid.UUID(int=self.rng.getrandbits(128)).hex)
        limit, lease_ms = self.rng.randint(1, 6), self.lease_ms()
        order = random.Random(self.rng.getrandbits(32))
        found = self.db.transact(
            lambda tr: claim_round(
                tr, consumer, self.now, limit=limit, lease_ms=lease_ms, tries=tries,
                rng=order, watch=False,
            )
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
        self.settled(claim, PENDING)
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

    def complete(self) -> str:
        return self.settle_one(
            lambda claim: ("completed", str(quick.complete(self.db, claim, now_ms=self.now)))
        )

    def complete_in_transaction(self) -> str:
        def act(claim: Claim) -> tuple[str, str]:
            effect = APP.pack(("fx", claim.job_id))

            def finish(tr: Any) -> bool:
                done = quick.complete(tr, claim, now_ms=self.now)
                if done:
                    tr.add(effect, _ONE)
                return done

            self.db.transact(finish)
            self.jobs[claim.job_id].effect += 1
            return "completed", "with an app effect"

        return self.settle_one(act)

    def fail(self) -> str:
        def act(claim: Claim) -> tuple[str, str]:
            delay = self.rng.choice((0, 300, 3_000))
            got = quick.fail(self.db, claim, "boom", delay_ms=delay, now_ms=self.now)
            return (PENDING if got == "requeued" else "dead"), f"delay={delay}: {got}"

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
        attempts = [Attempt(c, self.config, self.rng.choice(errors)) for c in batch]
        outcomes = settle_batch(self.db, attempts)
        status = {
            Outcome.COMPLETED: "completed",
            Outcome.REQUEUED: PENDING,
            Outcome.SNOOZED: PENDING,
            Outcome.DEAD_LETTERED: "dead",
            Outcome.DISCARDED: "discarded",
        }
        for attempt, outcome in zip(attempts, outcomes, strict=True):
            self.drop(consumer, attempt.claim)
            if outcome is not Outcome.LEASE_LOST:
                self.settled(attempt.claim, status[outcome])
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
        try:
            cancelled = quick.cancel(self.db, job_id)
        except quick.JobRunning:
            return f"{job_id}: running"
        if cancelled and model.status in (PENDING, "cancelled"):
            model.status = "cancelled"
        elif cancelled or model.status == PENDING:
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


def simulate_seed(seed: int, steps: int, workdir: Path) -> Result:
    """Run one seed on a fresh store file under ``workdir``; raises Violation."""
    path = workdir / f"seed-{seed}.db"
    try:
        return Simulation(seed, path, steps).run()
    finally:
        for leftover in workdir.glob(f"seed-{seed}.db*"):
            leftover.unlink()


@dataclass
class Summary:
    """What a run of many seeds did."""

    seeds: int = 0
    steps: int = 0
    seconds: float = 0.0
    ops: Counter[str] = field(default_factory=Counter)
    faults: Counter[int] = field(default_factory=Counter)
    failure: Violation | None = None


def run_seeds(
    seeds: list[int], steps: int, *, breakage: str | None = None, progress: bool = False
) -> Summary:
    """Run ``seeds`` in order, stopping at the first violation."""
    summary = Summary()
    workdir = Path(tempfile.mkdtemp(prefix="quick-sim-"))
    started = time.perf_counter()
    try:
        with applied(breakage):
            for seed in seeds:
                try:
                    result = simulate_seed(seed, steps, workdir)
                except Violation as violation:
                    summary.failure = violation
                    summary.seeds += 1
                    summary.steps += violation.step
                    break
                summary.seeds += 1
                summary.steps += result.steps
                summary.ops.update(result.ops)
                summary.faults.update(result.faults)
                if progress and summary.seeds % 500 == 0:
                    rate = summary.seeds / (time.perf_counter() - started)
                    print(f"  {summary.seeds} seeds, {rate:.1f} seeds/s", file=sys.stderr)
    finally:
        summary.seconds = time.perf_counter() - started
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed of --seeds")
    parser.add_argument("--seed", type=int, help="run (replay) only this seed")
    parser.add_argument("--steps", type=int, default=60, help="random steps per seed")
    parser.add_argument("--break", dest="breakage", choices=sorted(BREAKS), help="apply a break")
    parser.add_argument("--list-breaks", action="store_true", help="list the breaks and exit")
    parser.add_argument("--progress", action="store_true", help="report every 500 seeds")
    args = parser.parse_args(argv)
    if args.list_breaks:
        for name, breakage in BREAKS.items():
            print(f"{name:26} {breakage.summary}")
        return 0
    seeds = (
        [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    )
    summary = run_seeds(seeds, args.steps, breakage=args.breakage, progress=args.progress)
    rate = summary.seeds / summary.seconds if summary.seconds else 0.0
    print(
        f"{summary.seeds} seeds, {summary.steps} steps in {summary.seconds:.1f} s "
        f"({rate:.1f} seeds/s, {summary.steps / max(summary.seconds, 1e-9):.0f} steps/s)"
    )
    if summary.faults:
        print(
            "injected faults: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary.faults.items()))
        )
    if summary.ops:
        print("operations: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.ops.items())))
    failure = summary.failure
    if failure is None:
        print(
            "no violation" + (f" (break {args.breakage} was NOT caught)" if args.breakage else "")
        )
        return 1 if args.breakage else 0
    print(f"VIOLATION at {failure}")
    replay = f"python scripts/simulate.py --seed {failure.seed} --steps {args.steps}"
    print(f"replay: {replay}" + (f" --break {args.breakage}" if args.breakage else ""))
    return 1


if __name__ == "__main__":
    sys.exit(main())
