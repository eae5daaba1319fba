"""Chaos at scale: supervised worker processes SIGKILLed at random while they drain jobs
and workflow runs from one sqlite file; then nothing may be lost, doubled or miscounted.

Usage (by hand, not in CI; a few minutes on two cores)::

    python scripts/chaos.py                      # 20,000 jobs, 500 runs, 10 kills
    python scripts/chaos.py --jobs 2000 --runs 50 --kills 3 --seed 7 --keep

One ``quick worker --processes 4`` (the supervisor restarts a child that dies) serves
``scripts/chaos_app.py``. The script enqueues the jobs (transactional ``ledger`` jobs,
a fifth of them failing their first attempt, and ``doomed`` jobs that always fail) and
starts the runs of a four-step diamond, then sends ``kill -9`` to a random worker
process at random points of the drain. When every queue is empty and every run
has ended it stops the supervisor and checks:

* nothing lost: every ledger job completed, every doomed job is a dead letter (and no
  other job is), every run succeeded with the diamond's final output;
* no transactional effect doubled: each ledger job's app counter is exactly 1, and no
  other counter exists;
* counters exact: ``quick.checking.check_deep`` reports no problem, and every queue's
  scheduled, ready and leased counters are zero (dead: its doomed jobs).

See ``docs/chaos.md`` for the figures of a full run. Exit status 0 when every check held.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos_app import EFFECTS, FINAL, FLOW

import quick
from keyspace.protocol import Database, Transaction
from quick.checking import check_deep
from workflow import inspect_run, list_runs, start_run

ROOT = Path(__file__).resolve().parents[1]
QUEUES = [f"tenant-{i}" for i in range(20)]
#: One job in this many is doomed (dead-lettered after two attempts).
DOOMED_EVERY = 100
#: One ledger job in this many fails its first attempt.
FLAKY_EVERY = 5
PROCESSES = 4
#: Longest the drain may take before the run is declared stuck.
TIMEOUT_SECONDS = 1_800.0


@dataclass
class Plan:
    """What was put in the store, to check against at the end."""

    ledger: set[str] = field(default_factory=set)
    flaky: set[str] = field(default_factory=set)
    doomed: set[str] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)


@dataclass
class Chaos:
    """What the run did to the workers."""

    kills: int = 0
    restarts: int = 0
    pids: set[int] = field(default_factory=set)


def load(db: Database, jobs: int, runs: int) -> Plan:
    """Enqueue ``jobs`` jobs and start ``runs`` runs, in batches of 500 and 100."""
    plan = Plan()
    for first in range(0, jobs, 500):
        specs = []
        for i in range(first, min(jobs, first + 500)):
            doomed = i % DOOMED_EVERY == DOOMED_EVERY - 1
            job_id = f"job-{i:06d}"
            spec: dict[str, Any] = {
                "queue_id": QUEUES[i % len(QUEUES)],
                "topic": "doomed" if doomed else "ledger",
                "payload": {"i": i, "flaky": i % FLAKY_EVERY == 0},
                "job_id": job_id,
                "max_attempts": 2 if doomed else None,
            }
            specs.append(spec)
            if doomed:
                plan.doomed.add(job_id)
            else:
                plan.ledger.add(job_id)
                if i % FLAKY_EVERY == 0:
                    plan.flaky.add(job_id)
        quick.enqueue_many(db, specs)

    def start_batch(tr: Transaction, first: int, last: int) -> list[str]:
        return [
            start_run(tr, FLOW, i, queue_id=QUEUES[i % len(QUEUES)], idempotency_key=f"run-{i}")
            for i in range(first, last)
        ]

    for first in range(0, runs, 100):
        plan.runs += db.transact(start_batch, first, min(runs, first + 100))
    return plan


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def remaining(db: Database, runs: int) -> tuple[int, int]:
    """(jobs scheduled, ready or leased; runs not yet ended)."""
    jobs = sum(
        c["scheduled"] + c["ready"] + c["leased"]
        for c in (quick.queue_counts(db, q) for q in QUEUES)
    )
    ended = sum(
        len(list_runs(db, workflow=FLOW.name, status=status, limit=runs + 1))
        for status in ("succeeded", "failed", "cancelled")
    )
    return jobs, runs - ended


def start_supervisor(url: str, log: Path) -> subprocess.Popen[bytes]:
    """``quick worker --processes 4`` on ``chaos_app``, logging warnings to ``log``."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}{os.pathsep}{ROOT}"}
    argv = [sys.executable, "-m", "quick", "--db", url, "worker", "--app", "chaos_app:app"]
    argv += ["--processes", str(PROCESSES), "--concurrency", "8", "--lease-seconds", "2"]
    argv += ["--grace", "10", "--log-level", "warning"]
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stderr=out, stdout=out)


def drain(
    db: Database, supervisor: subprocess.Popen[bytes], runs: int, kills: int, rng: random.Random
) -> Chaos:
    """Wait for the work to end, killing a random worker ``kills`` times on the way.

    Each kill waits for a random point of the drain (when the items left fall below a
    random 15-97% of the start's), so all of them land while work remains, at a
    different moment every seed, whatever the machine's speed.
    """
    chaos = Chaos()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    total = sum(remaining(db, runs))
    marks = sorted((rng.uniform(0.15, 0.97) * total for _ in range(kills)), reverse=True)
    while True:
        live = children(supervisor.pid)
        chaos.pids |= live
        jobs, open_runs = remaining(db, runs)
        if jobs == 0 and open_runs == 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"stuck: {jobs} jobs and {open_runs} runs left")
        if chaos.kills < kills and jobs + open_runs <= marks[chaos.kills] and live:
            victim = rng.choice(sorted(live))
            os.kill(victim, signal.SIGKILL)
            chaos.kills += 1
            print(f"  kill -9 {victim} ({jobs} jobs, {open_runs} runs left)", flush=True)
        time.sleep(0.2)
    # Back at full strength before the stop: the supervisor restarted every victim.
    # (Its backoff after a child's repeated quick deaths is at most 30 s.)
    while len(children(supervisor.pid)) < PROCESSES and time.monotonic() < deadline:
        chaos.pids |= children(supervisor.pid)
        time.sleep(0.2)
    chaos.pids |= children(supervisor.pid)
    chaos.restarts = len(chaos.pids) - PROCESSES
    return chaos


def check(db: Database, plan: Plan) -> list[str]:
    """Every end-of-run assertion; the problems found (none when the run was clean)."""
    problems: list[str] = []
    states: dict[str, int] = {}
    for job_id in sorted(plan.ledger | plan.doomed):
        state = quick.job_state(db, job_id)
        want = quick.JobState.DEAD if job_id in plan.doomed else quick.JobState.COMPLETED
        if state is not want:
            problems.append(f"job {job_id} is {state}, expected {want}")
        states[str(state)] = states.get(str(state), 0) + 1
    dead = {d.job_id for q in QUEUES for d in quick.list_dead(db, q, limit=10_000)}
    if dead != plan.doomed:
        problems.append(
            f"dead letters differ from the doomed jobs: {sorted(dead ^ plan.doomed)[:5]}"
        )
    rows = db.transact(lambda tr: tr.get_range(EFFECTS, EFFECTS + b"\xff"))
    effects = {key[len(EFFECTS) :].decode(): struct.unpack("<q", value)[0] for key, value in rows}
    for job_id in sorted(plan.ledger):
        if effects.get(job_id) != 1:
            problems.append(
                f"ledger job {job_id}: its effect was applied {effects.get(job_id, 0)} times"
            )
    for job_id in sorted(set(effects) - plan.ledger):
        problems.append(f"an effect for {job_id}, which is not a ledger job")
    for run_id in plan.runs:
        view = inspect_run(db, run_id)
        if view.status != "succeeded" or view.steps["d"].output != FINAL:
            problems.append(f"run {run_id} is {view.status}, output {view.steps['d'].output}")
    doomed_by_queue = dict.fromkeys(QUEUES, 0)
    for job_id in plan.doomed:
        doomed_by_queue[QUEUES[int(job_id.split("-")[1]) % len(QUEUES)]] += 1
    for q in QUEUES:
        counts: dict[str, int] = quick.queue_counts(db, q)
        zero = {"scheduled": 0, "ready": 0, "leased": 0, "dead": doomed_by_queue[q]}
        if counts != zero:
            problems.append(f"queue {q} counters {counts}, expected {zero}")
    report = check_deep(db)
    problems += [f"check --deep: {p.kind} at {p.key!r}: {p.detail}" for p in report.problems]
    print(f"  {report.keys} keys checked deep; job states {states}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs to enqueue")
    parser.add_argument("--runs", type=int, default=500, help="workflow runs to start")
    parser.add_argument("--kills", type=int, default=10, help="kill -9s of worker processes")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kills' victims and times")
    parser.add_argument("--keep", action="store_true", help="keep the store and the worker log")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="quick-chaos-"))
    url = f"sqlite:///{workdir / 'chaos.db'}"
    log = workdir / "workers.log"
    started = time.perf_counter()
    with quick.open(url) as db:
        plan = load(db, args.jobs, args.runs)
        loaded = time.perf_counter()
        print(
            f"loaded {len(plan.ledger) + len(plan.doomed)} jobs ({len(plan.flaky)} flaky, "
            f"{len(plan.doomed)} doomed) and {len(plan.runs)} runs in {loaded - started:.1f} s",
            flush=True,
        )
        supervisor = start_supervisor(url, log)
        try:
            chaos = drain(db, supervisor, args.runs, args.kills, rng)
        finally:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=120)
        drained = time.perf_counter()
        problems = check(db, plan)
    logged = log.read_text(errors="replace").count(" restarted")
    print(
        f"drained in {drained - loaded:.1f} s: {chaos.kills} kills, {chaos.restarts} restarts "
        f"({logged} in the supervisor's log), supervisor exit {supervisor.returncode}"
    )
    if supervisor.returncode != 0:
        problems.append(f"the supervisor exited {supervisor.returncode} (a child not restarted?)")
    if chaos.restarts != chaos.kills:
        problems.append(f"{chaos.kills} kills but {chaos.restarts} worker processes restarted")
    if chaos.kills < args.kills:
        problems.append(f"only {chaos.kills} of {args.kills} kills landed before the work ended")
    for problem in problems[:20]:
        print(f"PROBLEM {problem}")
    print(f"{len(problems)} problems; total {time.perf_counter() - started:.1f} s")
    if args.keep or problems:
        print(f"store and log kept in {workdir}")
    else:
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
