"""Benchmark the queue on the embedded sqlite engine against a raw-SQLite floor.

What it measures: jobs per second through the public API (``quick.open("sqlite:///...")``
on a fresh temporary file per run), for five workloads:

================  ===================================================================
``enqueue1``      ``quick.enqueue(db, queue, topic, {"n": i})``: one job per transaction
``enqueue100``    ``quick.enqueue_many(db, [100 specs])``: 100 jobs per transaction
``claim1``        ``quick.claim(db, queue, "bench", limit=1)`` then ``quick.complete``
                  for each claim, until the queue is drained (jobs pre-enqueued, untimed)
``claim10``       the same with ``limit=10``
``claim10x100q``  ``claim10`` over 100 queues, walked round-robin (the per-tenant path:
                  every claim leases a different queue and refreshes its own pointer)
================  ===================================================================

A claim is two transactions (queue lease, then job leases) and every complete one more,
so ``claim1`` costs three transactions per job and ``claim10`` 1.2.

The floor is ``shared/bench/limit/sqlite_floor.py`` beside the checkout (``--floor PATH``),
imported by path and run in the same process: its ``run(n, batch)`` times the minimal row work of a
job in plain ``sqlite3`` (one INSERT per enqueue, one UPDATE per lease, one DELETE per
complete; ``batch`` rows per transaction) and returns (lifecycle, insert, update,
delete) rates. The ratios compare ``enqueue1`` with its insert rate at batch 1,
``enqueue100`` with insert at batch 100, and ``claim1`` / ``claim10`` (and
``claim10x100q``) with update-then-delete at batch 1 / 10, combined as one job needing
both: ``1 / (1/update + 1/delete)``. Without the floor file the ratios are skipped.

Every run verifies before its rate counts: each enqueue returned a distinct id and the
queue's counters, ready index and job records hold exactly those jobs; each pre-enqueued
job was claimed exactly once (attempt 1), its tombstone in the job directory says
``completed`` with the claim's token, and every counter (``quick.queue_counts``), index
and job record is back to zero. A run that fails a check stops the benchmark (exit 1)
before any rate is reported.

Runs warm up on their own queues first, then time; workloads and floor runs are
interleaved (their order reversed on every other repetition) and repeated ``--reps``
times; the report gives medians. The exit code is 0 whatever the ratios, 1 when a
run fails verification.

Run it from the repository root::

    .venv/bin/python scripts/bench_queue.py                       # about 80 s on 2 cores
    .venv/bin/python scripts/bench_queue.py --scale 0.2 --reps 1  # a quick look
    .venv/bin/python scripts/bench_queue.py --only claim10 --no-floor   # e.g. to profile
    .venv/bin/python scripts/bench_queue.py --reps 5 --json bench.json

``--scale`` multiplies every job count, ``--dir`` picks where the temporary files go.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchlib import (
    PROJECT_ROOT,
    BrokenRun,
    add_common_arguments,
    add_only_argument,
    alternating,
    check_common,
    command_line,
    fresh_directory,
    job_directory,
    load_module,
    median_of,
    print_footer,
    private_tempdir,
    rate,
    report_broken,
    scaled,
    table,
    write_json,
)

import quick
from keyspace import Database, Transaction
from keyspace.layout import QueueKeys

DEFAULT_FLOOR = PROJECT_ROOT.parent / "shared" / "bench" / "limit" / "sqlite_floor.py"
TOPIC = "bench"
OWNER = "bench"
MANY_QUEUES = 100
PRELOAD_CHUNK = 500  # jobs per enqueue_many transaction when pre-enqueueing (untimed)
FLOOR_BATCHES = (1, 10, 100)
FLOOR_JOBS = 20000  # jobs per floor run at --scale 1


# -- verification ---------------------------------------------------------------------


def _count(tr: Transaction, bounds: tuple[bytes, bytes]) -> int:
    return len(tr.snapshot.get_range(*bounds))


def _queue_rows(db: Database, queue: str) -> tuple[int, int, int]:
    """(ready-index entries, scheduled-index entries, job records) stored for ``queue``."""
    keys = QueueKeys(queue)

    def read(tr: Transaction) -> tuple[int, int, int]:
        return (
            _count(tr, keys.ready_range()),
            _count(tr, keys.scheduled_range()),
            _count(tr, keys.space["j"].range()),
        )

    return db.transact(read)


def _expect_counts(db: Database, queue: str, ready: int) -> None:
    counts = quick.queue_counts(db, queue)
    expected = dict.fromkeys(counts, 0) | {"ready": ready}
    if counts != expected:
        raise BrokenRun(f"queue {queue!r}: counts {counts}, expected {expected}")
    rows = _queue_rows(db, queue)
    if rows != (ready, 0, ready):
        raise BrokenRun(
            f"queue {queue!r}: (ready, scheduled, jobs) rows {rows}, expected {(ready, 0, ready)}"
        )


def verify_enqueued(db: Database, expected: dict[str, list[str]]) -> None:
    """Each queue holds exactly the (distinct) ids enqueued on it, all ready."""
    for queue, ids in expected.items():
        if len(set(ids)) != len(ids):
            raise BrokenRun(f"queue {queue!r}: duplicate job ids returned by enqueue")
        _expect_counts(db, queue, len(ids))


def verify_drained(db: Database, expected: dict[str, list[str]], claims: list[quick.Claim]) -> None:
    """Every expected job was claimed exactly once and completed; the queues are empty."""
    seen: dict[str, quick.Claim] = {}
    for item in claims:
        if item.job_id in seen:
            raise BrokenRun(f"job {item.job_id} was claimed twice")
        if item.attempt != 1:
            raise BrokenRun(f"job {item.job_id} was claimed on attempt {item.attempt}")
        seen[item.job_id] = item
    wanted = {job_id: queue for queue, ids in expected.items() for job_id in ids}
    if seen.keys() != wanted.keys():
        missing, extra = len(wanted.keys() - seen), len(seen.keys() - wanted)
        raise BrokenRun(f"claimed set differs: {missing} jobs never claimed, {extra} unexpected")
    for job_id, item in seen.items():
        if item.queue_id != wanted[job_id]:
            raise BrokenRun(f"job {job_id} claimed from {item.queue_id!r}, not {wanted[job_id]!r}")
    for queue in expected:
        _expect_counts(db, queue, 0)
    entries = job_directory(db)
    for job_id, item in seen.items():
        entry = entries.get(job_id)
        if entry is None or entry.get("s") != "completed" or entry.get("k") != item.token:
            raise BrokenRun(f"job {job_id}: directory entry {entry}, expected completed")


# -- workloads: each sets up (untimed), times its loop, verifies; returns (seconds, jobs) --


def _specs(queue: str, start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"queue_id": queue, "topic": TOPIC, "payload": {"n": i}} for i in range(start, start + n)
    ]


def _preload(db: Database, queues: Sequence[str], per_queue: int) -> dict[str, list[str]]:
    """Enqueue ``per_queue`` jobs on each queue, ``PRELOAD_CHUNK`` per transaction."""
    out: dict[str, list[str]] = {}
    for queue in queues:
        ids: list[str] = []
        for start in range(0, per_queue, PRELOAD_CHUNK):
            ids += quick.enqueue_many(
                db, _specs(queue, start, min(PRELOAD_CHUNK, per_queue - start))
            )
        out[queue] = ids
    verify_enqueued(db, out)
    return out


def enqueue1(db: Database, tag: str, n: int) -> tuple[float, int]:
    queue = f"{tag}-enqueue1"
    payloads = [{"n": i} for i in range(n)]
    enqueue = quick.enqueue
    ids: list[str] = []
    append = ids.append
    gc.collect()
    started = time.perf_counter()
    for payload in payloads:
        append(enqueue(db, queue, TOPIC, payload))
    elapsed = time.perf_counter() - started
    verify_enqueued(db, {queue: ids})
    return elapsed, n


def enqueue100(db: Database, tag: str, n: int) -> tuple[float, int]:
    queue = f"{tag}-enqueue100"
    batches = [_specs(queue, start, 100) for start in range(0, n, 100)]
    enqueue_many = quick.enqueue_many
    ids: list[str] = []
    gc.collect()
    started = time.perf_counter()
    for batch in batches:
        ids += enqueue_many(db, batch)
    elapsed = time.perf_counter() - started
    verify_enqueued(db, {queue: ids})
    return elapsed, len(batches) * 100


def _drain(
    db: Database, queues: Sequence[str], limit: int, budget: int
) -> tuple[float, list[quick.Claim]]:
    """Claim ``limit`` at a time from the queues, round-robin, completing every claim,
    until each queue's claim comes back empty; return (seconds, claims)."""
    claim, complete = quick.claim, quick.complete
    active = collections.deque(queues)
    claims: list[quick.Claim] = []
    gc.collect()
    started = time.perf_counter()
    while active:
        queue = active.popleft()
        batch = claim(db, queue, OWNER, limit=limit)
        if not batch:
            continue
        for item in batch:
            complete(db, item)
        claims += batch
        if len(claims) > budget:
            raise BrokenRun(f"claimed {len(claims)} jobs, more than the {budget} enqueued")
        active.append(queue)
    return time.perf_counter() - started, claims


def _claim_workload(queues: int, limit: int) -> Callable[[Database, str, int], tuple[float, int]]:
    def workload(db: Database, tag: str, n: int) -> tuple[float, int]:
        names = [f"{tag}-claim{limit}-{i:03d}" for i in range(queues)]
        per_queue = max(1, n // queues)
        expected = _preload(db, names, per_queue)
        elapsed, claims = _drain(db, names, limit, per_queue * queues)
        verify_drained(db, expected, claims)
        return elapsed, len(claims)

    return workload


Runner = Callable[[Database, str, int], tuple[float, int]]


@dataclass(frozen=True)
class Workload:
    name: str
    per_transaction: str  # for the table
    count: int  # timed jobs at --scale 1
    multiple: int  # the job count is rounded up to a multiple of this
    runner: Runner
    floor_op: str  # "insert" or "lease" (update+delete)
    floor_batch: int
    warmup_multiple: int = 1  # the warm-up job count is rounded up to a multiple of this


# Counts keep a default run (3 reps, warm-ups, floor) near 80 s on 2 cores.
WORKLOADS = (
    Workload("enqueue1", "1 enqueue", 4000, 1, enqueue1, "insert", 1),
    Workload("enqueue100", "enqueue_many of 100", 20000, 100, enqueue100, "insert", 100, 100),
    Workload("claim1", "claim 1 (2 tx) + 1 complete", 3000, 1, _claim_workload(1, 1), "lease", 1),
    Workload(
        "claim10", "claim 10 (2 tx) + 10 completes", 6000, 10, _claim_workload(1, 10), "lease", 10
    ),
    Workload(
        "claim10x100q",
        f"as claim10, {MANY_QUEUES} queues round-robin",
        6000,
        10 * MANY_QUEUES,
        _claim_workload(MANY_QUEUES, 10),
        "lease",
        10,
        MANY_QUEUES,
    ),
)
BY_NAME = {w.name: w for w in WORKLOADS}


def _warmup(workload: Workload, count: int) -> int:
    return scaled(max(20, count // 20), 1.0, workload.warmup_multiple)


def run_workload(
    workload: Workload, count: int, directory: Path | None
) -> tuple[float, float, int]:
    """Warm up, then time ``count`` jobs of ``workload`` on a fresh file; (jobs/s, s, jobs)."""
    with (
        fresh_directory("bench_queue_", directory) as temp,
        quick.open(f"sqlite:///{temp / 'queue.db'}") as db,
    ):
        workload.runner(db, "warm", _warmup(workload, count))
        elapsed, jobs = workload.runner(db, "timed", count)
    if jobs != count:
        raise BrokenRun(f"{workload.name}: {jobs} jobs processed, expected {count}")
    return jobs / elapsed, elapsed, jobs


# -- the floor ------------------------------------------------------------------------


def load_floor(path: Path) -> ModuleType | None:
    """The floor module at ``path``, or None when there is none."""
    module = load_module(path, "sqlite_floor")
    if module is not None and not callable(getattr(module, "run", None)):
        raise SystemExit(f"{path} has no run(n, batch)")
    return module


def run_floor(floor: ModuleType, n: int, batch: int, directory: Path | None) -> dict[str, float]:
    """One floor run: jobs/s for the lifecycle and for insert, update and delete."""
    gc.collect()
    with private_tempdir(directory):  # the floor's mkdtemp() never cleans up
        life, insert, update, delete = floor.run(n, batch)
    rates = {
        "lifecycle": float(life),
        "insert": float(insert),
        "update": float(update),
        "delete": float(delete),
    }
    rates["lease"] = 1.0 / (1.0 / rates["update"] + 1.0 / rates["delete"])
    return rates


# -- driver ---------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark quick's queue on the sqlite engine against a raw-SQLite floor."
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--floor",
        type=Path,
        default=DEFAULT_FLOOR,
        metavar="PATH",
        help=f"the floor script (default {DEFAULT_FLOOR})",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the floor and ratios")
    add_only_argument(parser, list(BY_NAME))
    args = parser.parse_args(argv)
    check_common(parser, args)
    return args


FLOOR_LABEL = {"insert": "insert", "lease": "update+delete"}


def _table(rows: list[dict[str, Any]]) -> str:
    columns = [("workload", "---"), ("per transaction", "---"), ("jobs", "--:")]
    columns += [("queue jobs/s", "--:"), ("floor", "---"), ("floor jobs/s", "--:")]
    columns += [("queue/floor", "--:")]
    return table(
        columns,
        (
            [
                f"`{row['workload']}`",
                row["per_transaction"],
                f"{row['jobs']:,}",
                rate(row["median"]),
                f"{FLOOR_LABEL[row['floor_op']]}, batch {row['floor_batch']}",
                rate(row["floor_median"]),
                "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}",
            ]
            for row in rows
        ),
    )


def _floor_table(floor: dict[int, dict[str, float]]) -> str:
    headings = ["floor batch", "insert/s", "update/s", "delete/s", "update+delete jobs/s"]
    keys = ("insert", "update", "delete", "lease", "lifecycle")
    return table(
        [(heading, "--:") for heading in [*headings, "lifecycle jobs/s"]],
        ([str(batch), *(rate(rates[key]) for key in keys)] for batch, rates in floor.items()),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    command = command_line("bench_queue", argv)
    workloads = [w for w in WORKLOADS if args.only is None or w.name in args.only]
    counts = {w.name: scaled(w.count, args.scale, w.multiple) for w in workloads}
    floor_module = None
    floor_path = args.floor.resolve()
    if not args.no_floor:
        floor_module = load_floor(floor_path)
        if floor_module is None:
            print(f"floor not found at {floor_path}: skipping the floor and the ratios")
    floor_jobs = scaled(FLOOR_JOBS, args.scale, 100)
    python = platform.python_version()
    print(
        f"python {python}, sqlite {sqlite3.sqlite_version}, reps={args.reps}, "
        f"scale={args.scale:g}, cpus={os.cpu_count()}"
    )
    print(
        "jobs per run: "
        + ", ".join(f"{k}={v}" for k, v in counts.items())
        + (f", floor={floor_jobs} per batch" if floor_module is not None else "")
    )

    # One schedule of runs per repetition: every workload, then every floor batch;
    # reversed on odd repetitions so neither side always runs first.
    schedule: list[tuple[str, Any]] = [("queue", w) for w in workloads]
    if floor_module is not None:
        schedule += [("floor", b) for b in FLOOR_BATCHES]
    per_rep: dict[str, list[dict[str, float]]] = {w.name: [] for w in workloads}
    floor_reps: dict[int, list[dict[str, float]]] = {b: [] for b in FLOOR_BATCHES}
    started = time.perf_counter()
    try:
        for rep, (kind, item) in alternating(schedule, args.reps):
            if kind == "queue":
                jobs_per_s, seconds, jobs = run_workload(item, counts[item.name], args.dir)
                per_rep[item.name].append({"jobs_per_s": jobs_per_s, "seconds": seconds})
                print(
                    f"rep {rep + 1}/{args.reps}  {item.name:<13} {rate(jobs_per_s):>8} jobs/s  "
                    f"({jobs} jobs, {seconds:.2f} s)",
                    flush=True,
                )
            else:
                assert floor_module is not None
                rates = run_floor(floor_module, floor_jobs, item, args.dir)
                floor_reps[item].append(rates)
                print(
                    f"rep {rep + 1}/{args.reps}  floor b={item:<5}  "
                    f"insert {rate(rates['insert'])}  update {rate(rates['update'])}  "
                    f"delete {rate(rates['delete'])}/s",
                    flush=True,
                )
    except BrokenRun as error:
        return report_broken(error)
    total_seconds = time.perf_counter() - started

    floor: dict[int, dict[str, float]] = {}
    if floor_module is not None:
        for batch, reps in floor_reps.items():
            floor[batch] = median_of(reps, ("lifecycle", "insert", "update", "delete", "lease"))
    rows: list[dict[str, Any]] = []
    for workload in workloads:
        reps = per_rep[workload.name]
        median = statistics.median(r["jobs_per_s"] for r in reps)
        floor_rate = floor[workload.floor_batch][workload.floor_op] if floor else None
        rows.append(
            {
                "workload": workload.name,
                "per_transaction": workload.per_transaction,
                "jobs": counts[workload.name],
                "warmup_jobs": _warmup(workload, counts[workload.name]),
                "median": median,
                "floor_op": workload.floor_op,
                "floor_batch": workload.floor_batch,
                "floor_median": floor_rate,
                "ratio": None if floor_rate is None else median / floor_rate,
                "reps": reps,
            }
        )

    print()
    print(f"queue on sqlite vs raw-SQLite floor, median of {args.reps} (jobs/s):")
    print()
    print(_table(rows))
    if floor:
        print()
        print(f"floor ({floor_path}, {floor_jobs} jobs per run), median of {args.reps}:")
        print()
        print(_floor_table(floor))
    print_footer(command, total_seconds)
    write_json(
        args.json,
        command,
        argv,
        total_seconds,
        {
            "reps": args.reps,
            "scale": args.scale,
            "floor_path": str(floor_path) if floor_module is not None else None,
            "floor_jobs": floor_jobs if floor_module is not None else None,
            "floor": {str(b): {"median": floor[b], "reps": floor_reps[b]} for b in floor},
            "workloads": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
