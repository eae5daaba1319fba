"""Benchmark workflow runs on the embedded sqlite engine against the plain queue.

What it measures, each repetition on fresh temporary files:

* ``chain``: ``--runs`` runs of a 10-step chain (s0 -> s1 -> ... -> s9), and
  ``fanout``: ``--runs`` runs of 1 -> 8 parallel -> 1. Every step is a no-op task.
  The runs are started first (untimed against the drain), then ``quick worker --app
  bench_workflow:app --processes 2`` (two real consumer processes under the
  supervisor) drains them. **steps/s** is the number of steps divided by the time from
  the first step's start (its claim, from the run journals) to the last step's finish
  (its completion commit).
* ``queue``: the plain queue on the same workers: ``10 x --runs`` no-op jobs enqueued
  first, then drained by the same command; **jobs/s** from the first job's start (as
  its handler saw it) to the last completion (the job directory's tombstone time).
  The workflow rates are then given as a fraction of it (the target is >= 0.6): a
  step costs the queue's claim and completion plus the workflow's records, journal
  events and the scheduling of its successors, all in the same transactions.
* ``map``: one run of a step returning a list of ``--map`` items (10,000), a map over
  it and a step after it, all on one queue; **steps/s** counts each instance as a step
  (plus the two), from the list step's start to the last step's finish. Checked: the
  run succeeded, every instance ran exactly once, the map counts them all succeeded.
* ``start_run/s``: while starting each shape's runs, half are started one per
  transaction (``workflow.start_run(db, ...)``) and half 100 per transaction
  (``start_run(tr, ...)`` joining one transaction), each timed on its own.

Runs are spread round-robin over ``--queues`` queues (tenants), and so are the plain
jobs. Every handler appends one line per execution to a record file (the same cost
for steps and jobs). Before any rate is reported each repetition is verified: every
run succeeded; every step succeeded exactly once (one ``step_succeeded`` event, one
attempt, and exactly one handler execution); every plain job ran once and its
tombstone says completed. A repetition that fails a check (or does not drain within
``--timeout``) stops the benchmark with exit code 1.

Workloads are interleaved (order reversed on every other repetition) and repeated
``--reps`` times; the report gives medians. Run it from the repository root::

    .venv/bin/python scripts/bench_workflow.py                      # about 8 min on 2 cores
    .venv/bin/python scripts/bench_workflow.py --runs 200 --reps 1  # a quick look
    .venv/bin/python scripts/bench_workflow.py --reps 5 --json bench_workflow.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchlib import (
    BrokenRun,
    Workers,
    add_common_arguments,
    alternating,
    check_common,
    command_line,
    fresh_directory,
    job_directory,
    print_footer,
    report_broken,
    worker_argv,
    write_json,
)

import quick
import workflow
from keyspace import Database, Transaction

RECORD_ENV = "QUICK_BENCH_WORKFLOW_RECORD"
STEP_TOPIC = "bench:step"
JOB_TOPIC = "bench:job"
LIST_TOPIC = "bench:list"
PROCESSES = 2
START_BATCH = 100
STEPS = 10

# -- the app the worker processes serve: ``--app bench_workflow:app`` --------------------

app = quick.App()
_out: tuple[int, int] | None = None  # (pid, fd), reopened in each worker process


def _record(line: bytes) -> None:
    """Append one line to the record file with a single O_APPEND write (never interleaved)."""
    global _out
    pid = os.getpid()
    if _out is None or _out[0] != pid:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        _out = (pid, os.open(os.environ[RECORD_ENV], flags, 0o644))
    os.write(_out[1], line)


@app.job(STEP_TOPIC)
def step(payload: Any, meta: quick.Meta) -> None:
    index = "" if meta.context.index is None else f" {meta.context.index}"
    _record(f"s {meta.context.run_id} {meta.context.step}{index}\n".encode())


@app.job(LIST_TOPIC)
def listing(payload: Any, meta: quick.Meta) -> list[int]:
    """The list a map step maps: ``payload`` items (the run's input)."""
    _record(f"s {meta.context.run_id} {meta.context.step}\n".encode())
    return list(range(payload))


@app.job(JOB_TOPIC)
def job(payload: Any, meta: quick.Meta) -> None:
    _record(b"j %d %d\n" % (payload, time.time_ns() // 1_000_000))


def chain() -> workflow.Workflow:
    wf = workflow.Workflow("bench-chain")
    for i in range(STEPS):
        wf.step(f"s{i}", topic=STEP_TOPIC, after=[f"s{i - 1}"] if i else [])
    return wf


def fanout() -> workflow.Workflow:
    wf = workflow.Workflow("bench-fanout").step("root", topic=STEP_TOPIC)
    middle = [f"p{i}" for i in range(STEPS - 2)]
    for key in middle:
        wf.step(key, topic=STEP_TOPIC, after=["root"])
    return wf.step("join", topic=STEP_TOPIC, after=middle)


def mapped() -> workflow.Workflow:
    """A step listing ``MAP_ITEMS`` items, a map over them, and a step after the map."""
    wf = workflow.Workflow("bench-map").step("list", topic=LIST_TOPIC)
    wf.map("each", topic=STEP_TOPIC, over="list")
    return wf.step("after", topic=STEP_TOPIC, after=["each"])


SHAPES: dict[str, Callable[[], workflow.Workflow]] = {"chain": chain, "fanout": fanout}
#: Items of the map shape's one run (its step rate counts each instance as a step).
MAP_ITEMS = 10_000


# -- running one workload -------------------------------------------------------------------


def _worker(url: str, record: Path) -> Workers:
    """``quick worker --app bench_workflow:app --processes 2`` on ``url``, its output
    kept beside the record file."""
    argv = worker_argv(url, "bench_workflow:app", PROCESSES, *_quiet_flag())
    return Workers(argv, RECORD_ENV, record, record.with_suffix(".log"))


_QUIET: list[str] | None = None


def _quiet_flag() -> list[str]:
    """``--log-level warning`` when the worker logs each job by default (and has the flag)."""
    global _QUIET
    if _QUIET is None:
        shown = subprocess.run(
            [sys.executable, "-m", "quick", "worker", "--help"], capture_output=True, text=True
        )
        _QUIET = ["--log-level", "warning"] if "--log-level" in shown.stdout else []
    return _QUIET


def _lines(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def _drain(url: str, record: Path, expected: int, done: Callable[[], bool], timeout: float) -> None:
    """Run the workers until ``expected`` handler lines are recorded and ``done()``."""
    worker = _worker(url, record)
    try:
        deadline = time.monotonic() + timeout
        while len(_lines(record)) < expected or not done():
            if not worker.alive():
                raise BrokenRun(f"the worker exited with {worker.proc.returncode}")
            if time.monotonic() > deadline:
                raise BrokenRun(f"not drained within {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        worker.stop()


def _start_runs(
    db: Database, wf: workflow.Workflow, runs: int, queues: int
) -> tuple[list[str], float, float]:
    """Start ``runs`` runs: half one per transaction, half ``START_BATCH`` per transaction.

    Returns (run ids, start_run/s one per transaction, start_run/s batched).
    """
    single = runs // 2
    ids: list[str] = []
    began = time.perf_counter()
    for i in range(single):
        ids.append(workflow.start_run(db, wf, i, queue_id=f"tenant-{i % queues}"))
    one_per_tx = single / (time.perf_counter() - began)

    @quick.transactional
    def batch(tr: Transaction, numbers: range) -> list[str]:
        return [workflow.start_run(tr, wf, i, queue_id=f"tenant-{i % queues}") for i in numbers]

    began = time.perf_counter()
    for first in range(single, runs, START_BATCH):
        ids += batch(db, range(first, min(runs, first + START_BATCH)))
    batched = (runs - single) / (time.perf_counter() - began)
    if len(set(ids)) != runs:
        raise BrokenRun(f"{len(set(ids))} distinct run ids for {runs} starts")
    return ids, one_per_tx, batched


def _verify_runs(db: Database, ids: list[str], steps: list[str], record: Path) -> tuple[int, int]:
    """Every run succeeded, every step exactly once; return (first start, last finish) ms."""
    executions = Counter(line for line in _lines(record) if line.startswith("s "))
    repeated = [line for line, n in executions.items() if n != 1]
    if repeated:
        raise BrokenRun(f"{len(repeated)} steps ran more than once, e.g. {repeated[0]!r}")
    if len(executions) != len(ids) * len(steps):
        raise BrokenRun(f"{len(executions)} step executions, expected {len(ids) * len(steps)}")
    first, last = None, None
    for run_id in ids:
        run = workflow.inspect_run(db, run_id)
        if run.status != "succeeded":
            raise BrokenRun(f"run {run_id} is {run.status}")
        succeeded = Counter(e.step for e in run.journal if e.kind == "step_succeeded")
        for key in steps:
            view = run.steps[key]
            if view.status != "succeeded" or view.attempts != 1 or succeeded[key] != 1:
                raise BrokenRun(
                    f"run {run_id} step {key}: {view.status}, {view.attempts} attempts, "
                    f"{succeeded[key]} step_succeeded events"
                )
            if f"s {run_id} {key}" not in executions:
                raise BrokenRun(f"run {run_id} step {key}: its handler never ran")
            assert view.started_ms is not None
            assert view.finished_ms is not None
            first = view.started_ms if first is None else min(first, view.started_ms)
            last = view.finished_ms if last is None else max(last, view.finished_ms)
    assert first is not None
    assert last is not None
    return first, last


def run_shape(
    shape: str, runs: int, queues: int, directory: Path, timeout: float
) -> dict[str, float]:
    """Start and drain ``runs`` runs of ``shape``; its rates, once verified."""
    wf = SHAPES[shape]()
    steps = [spec.key for spec in wf.steps]
    url = f"sqlite:///{directory / f'{shape}.db'}"
    record = directory / f"{shape}.record"
    with quick.open(url) as db:
        ids, one_per_tx, batched = _start_runs(db, wf, runs, queues)

        def done() -> bool:
            return not workflow.list_runs(db, status="running", limit=1)

        _drain(url, record, runs * len(steps), done, timeout)
        first, last = _verify_runs(db, ids, steps, record)
    seconds = max(last - first, 1) / 1000
    return {
        "steps_per_s": runs * len(steps) / seconds,
        "seconds": seconds,
        "start_run_1_per_s": one_per_tx,
        f"start_run_{START_BATCH}_per_s": batched,
    }


def run_map(items: int, directory: Path, timeout: float) -> dict[str, float]:
    """One run mapping ``items`` instances; steps/s (each instance a step), once verified:
    the run succeeded, every instance ran exactly once and the map counts them all."""
    wf = mapped()
    url = f"sqlite:///{directory / 'map.db'}"
    record = directory / "map.record"
    with quick.open(url) as db:
        run_id = workflow.start_run(db, wf, items, queue_id="tenant-0")

        def done() -> bool:
            return workflow.inspect_run(db, run_id).status != "running"

        _drain(url, record, items + 2, done, timeout)
        run = workflow.inspect_run(db, run_id)
    if run.status != "succeeded":
        raise BrokenRun(f"map run {run_id} is {run.status}")
    executions = Counter(_lines(record))
    instances = [f"s {run_id} each {i}" for i in range(items)]
    if any(executions[line] != 1 for line in instances) or len(executions) != items + 2:
        raise BrokenRun(f"{len(executions)} distinct executions for {items} instances + 2 steps")
    if run.steps["each"].instances != {"succeeded": items}:
        raise BrokenRun(f"the map counts {run.steps['each'].instances}")
    first, last = run.steps["list"].started_ms, run.steps["after"].finished_ms
    assert first is not None
    assert last is not None
    seconds = max(last - first, 1) / 1000
    return {"steps_per_s": (items + 2) / seconds, "seconds": seconds}


def run_queue(jobs: int, queues: int, directory: Path, timeout: float) -> dict[str, float]:
    """Enqueue and drain ``jobs`` no-op jobs; jobs/s once verified."""
    url = f"sqlite:///{directory / 'queue.db'}"
    record = directory / "queue.record"
    with quick.open(url) as db:
        ids: list[str] = []
        for first in range(0, jobs, 500):
            specs = [
                {"queue_id": f"tenant-{i % queues}", "topic": JOB_TOPIC, "payload": i}
                for i in range(first, min(jobs, first + 500))
            ]
            ids += quick.enqueue_many(db, specs)

        def done() -> bool:
            return all(
                not any(quick.queue_counts(db, f"tenant-{q}").values()) for q in range(queues)
            )

        _drain(url, record, jobs, done, timeout)
        ran = Counter(int(line.split()[1]) for line in _lines(record))
        if sorted(ran) != list(range(jobs)) or set(ran.values()) != {1}:
            raise BrokenRun(f"{len(ran)} distinct jobs ran, {sum(ran.values())} executions")
        started = min(int(line.split()[2]) for line in _lines(record))

        entries = job_directory(db)
    finished = [entries[i]["at"] for i in ids if entries.get(i, {}).get("s") == "completed"]
    if len(finished) != jobs:
        raise BrokenRun(f"{len(finished)} of {jobs} jobs have a completed tombstone")
    seconds = max(max(finished) - started, 1) / 1000
    return {"jobs_per_s": jobs / seconds, "seconds": seconds}


# -- driver ---------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark workflow runs (steps/s, start_run/s) against the plain queue."
    )
    parser.add_argument("--runs", type=int, default=1000, help="runs per shape (default 1000)")
    parser.add_argument("--queues", type=int, default=10, help="queues to spread work over")
    parser.add_argument(
        "--map", type=int, default=MAP_ITEMS, help=f"map instances (default {MAP_ITEMS}; 0: none)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per drain at most")
    add_common_arguments(parser, scale=None)
    args = parser.parse_args(argv)
    check_common(parser, args)
    if min(args.runs, args.queues) < 1 or args.timeout <= 0 or args.map < 0:
        parser.error("--runs, --queues and --timeout must be positive")
    if args.runs < 2:
        parser.error("--runs must be at least 2 (half are started one per transaction)")
    return args


def _median(reps: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in reps)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    command = command_line("bench_workflow", argv)
    jobs = args.runs * STEPS
    print(
        f"{args.runs} runs of {STEPS} steps per shape, {jobs} plain jobs, {PROCESSES} worker "
        f"processes, {args.queues} queues, {args.reps} reps"
    )
    schedule = ["queue", *SHAPES, *(["map"] if args.map else [])]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in schedule}
    started = time.perf_counter()
    try:
        for rep, name in alternating(schedule, args.reps):
            with fresh_directory("bench_workflow_", args.dir) as temp:
                if name == "queue":
                    result = run_queue(jobs, args.queues, temp, args.timeout)
                    rate = f"{result['jobs_per_s']:,.0f} jobs/s"
                elif name == "map":
                    result = run_map(args.map, temp, args.timeout)
                    rate = f"{result['steps_per_s']:,.0f} steps/s ({args.map} instances)"
                else:
                    result = run_shape(name, args.runs, args.queues, temp, args.timeout)
                    rate = (
                        f"{result['steps_per_s']:,.0f} steps/s, start_run "
                        f"{result['start_run_1_per_s']:,.0f}/s (1 per tx), "
                        f"{result[f'start_run_{START_BATCH}_per_s']:,.0f}/s "
                        f"({START_BATCH} per tx)"
                    )
            results[name].append(result)
            print(
                f"rep {rep + 1}/{args.reps}  {name:<7} {rate}  ({result['seconds']:.2f} s)",
                flush=True,
            )
    except BrokenRun as error:
        return report_broken(error)
    total_seconds = time.perf_counter() - started

    queue_rate = _median(results["queue"], "jobs_per_s")
    rows = []
    for shape in [name for name in schedule if name != "queue"]:
        reps = results[shape]
        steps = _median(reps, "steps_per_s")
        rows.append(
            {
                "shape": shape,
                "steps_per_s": steps,
                "ratio_to_queue": steps / queue_rate,
                "start_run_1_per_s": _median(reps, "start_run_1_per_s") if shape != "map" else 0,
                f"start_run_{START_BATCH}_per_s": (
                    _median(reps, f"start_run_{START_BATCH}_per_s") if shape != "map" else 0
                ),
                "reps": reps,
            }
        )
    print()
    print(f"workflows on sqlite, {PROCESSES} worker processes, median of {args.reps}:")
    print()
    print(
        f"| shape | steps/s | plain queue jobs/s | steps/queue (target >= 0.6) "
        f"| start_run/s, 1 per tx | start_run/s, {START_BATCH} per tx |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for row in rows:
        one, batched = row["start_run_1_per_s"], row[f"start_run_{START_BATCH}_per_s"]
        print(
            f"| `{row['shape']}` | {row['steps_per_s']:,.0f} | {queue_rate:,.0f} "
            f"| {row['ratio_to_queue']:.2f} | {one:,.0f} | {batched:,.0f} |"
            if row["shape"] != "map"
            else f"| `map` ({args.map:,} instances) | {row['steps_per_s']:,.0f} "
            f"| {queue_rate:,.0f} | {row['ratio_to_queue']:.2f} | - | - |"
        )
    print_footer(command, total_seconds)
    write_json(
        args.json,
        command,
        argv,
        total_seconds,
        {
            "runs": args.runs,
            "reps": args.reps,
            "queues": args.queues,
            "processes": PROCESSES,
            "queue": {"jobs": jobs, "jobs_per_s": queue_rate, "reps": results["queue"]},
            "shapes": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
