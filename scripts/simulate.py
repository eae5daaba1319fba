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

The operations, and the model of every job that they keep, are :mod:`sim_ops`'s. After
every step the whole store is read (:mod:`sim_store`) and checked against the store's
own invariants and against that model.
A failure prints the seed, the step and the operation, and exits 1.

See ``docs/simulation.md`` for the operations, the invariants and the measured figures.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
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
from sim_ops import CONSUMERS, PENDING, ModelJob, Operations
from sim_store import Snapshot, check_store, read_store
from sim_workflows import QUEUE as WF_QUEUE
from sim_workflows import Workflows

import keyspace.retry
import quick
import quick.claiming
import quick.jobs
import workflow.engine
from quick.app import JobConfig
from quick.jobs import Claim, JobState

__all__ = ["Violation", "Result", "simulate_seed", "run_seeds", "main"]

T0 = 1_800_000_000_000
#: Faults injected into commits on most seeds (the rest run on the plain engine).
FAULTS = "not_committed:0.04,commit_unknown_result:0.05,transaction_too_old:0.02"
FAULTY_SHARE = 0.7
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


class Simulation(Operations):
    """One seed: a store, a clock, a model, and the operations that drive them
    (:class:`sim_ops.Operations`)."""

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
            elif model.status == "completed" and snap.results.get(job_id, {}).get("rv") != (
                model.result
            ):
                kept = snap.results.get(job_id)
                out.append(f"job {job_id} completed with result {model.result!r}; stored {kept}")
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
