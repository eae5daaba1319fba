"""Benchmark quick end to end on the embedded sqlite engine: enqueue, drain, pickup latency.

What it measures, each run on a fresh temporary SQLite file (``sqlite:///<tmp>/bench.db``):

==============  ======================================================================
``enqueue1``    ``quick.enqueue(db, queue, topic, payload)`` in a loop: one job per
                transaction, from this process (jobs/s)
``enqueue100``  ``quick.enqueue_many(db, [100 specs])`` in a loop: 100 jobs per
                transaction (jobs/s)
``drain1``      20,000 no-op jobs pre-enqueued (untimed), then one real consumer
                process, ``python -m quick --db URL worker --app bench_jobs:app
                --log-level warning`` (no log line per job, as for the peers),
                launched and left to run until every job has recorded its start
``drain2``      the same with ``--processes 2`` (the supervisor and two consumers)
``latency``     ``quick worker --processes 2`` started and confirmed ready by one probe
                job, left idle for 2 s, then 200 jobs/s for 10 s enqueued from this
                process with ``quick.enqueue`` on a fixed schedule (absolute deadlines)
==============  ======================================================================

``drain2_keyed`` is ``drain2`` with every job naming one keyed limit whose ``max_running``
(100,000) is far above the concurrency: what a keyed limit shared by every job costs.

The job (``scripts/bench_jobs.py``) appends ``<i> <t_enqueue> <t_start> <pid>`` to one
``O_APPEND`` file; every count and timing comes from that file, as in the peer harness
(``../shared/bench/peers``). Payloads carry ``i`` and ``t_enqueue = time.time()``, taken
just before the enqueue call, so a latency includes the producer's own commit.

* drain jobs/s = (N - 1) / (last job start - first job start): start-up excluded.
* drain jobs/s incl. start-up = N / (moment the driver sees the N-th record - worker
  launch); the driver polls the file every 20 ms. "start-up" is launch to first job start.
* worker CPU ms/job = user + system CPU of the worker processes (supervisor included, from
  launch to exit) / N: what a job costs whatever else the machine is doing.
* latency = t_start - t_enqueue per job, nearest-rank p50 / p99 / max over the stream.

Every run verifies before its numbers count: enqueue runs check the distinct ids and the
queue's ready counter; drain and latency runs check that every job id ran at least once
(duplicates are reported, not failed: the queue is at-least-once), that the workers
exited cleanly on SIGTERM, and that afterwards the queue's counters (ready, scheduled,
leased, dead) are all zero. A run that fails stops the benchmark with exit code 1.

Each run also reports "others' CPUs": the CPUs that processes other than this script and
its workers kept busy meanwhile (from ``/proc/stat``), since a shared machine skews rates.

Workloads run in a fixed order, reversed on every other repetition, ``--reps`` times;
the tables give medians and (min-max). The targets column holds the project's goals:
drain2 >= 15,000 jobs/s, enqueue1 >= 11,200 jobs/s (twice the best peer's ~5,600),
enqueue100 >= 30,000 jobs/s, latency p99 below every peer's (best 1.3 ms). The exit code
does not depend on them.

Run it from the repository root::

    .venv/bin/python scripts/bench.py                        # about 5 min on 2 cores
    .venv/bin/python scripts/bench.py --scale 0.1 --reps 1   # a quick look
    .venv/bin/python scripts/bench.py --only latency --reps 5 --json latency.json
    .venv/bin/python scripts/bench.py --only drain2 --concurrency 16 --batch-size 50

``--scale`` multiplies every job count and the latency stream's duration (not its rate).
``--concurrency`` and ``--batch-size`` are passed to ``quick worker`` (its defaults, 8 and
10, otherwise). Rerun it whenever the consumer changes: nothing here depends on how the
consumer wakes up.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_jobs import RECORD_ENV, TOPIC
from benchlib import (
    BrokenRun,
    Records,
    Workers,
    add_common_arguments,
    add_only_argument,
    alternating,
    check_all_ran,
    check_checkout,
    check_common,
    check_drained,
    children_cpu,
    code_version,
    command_line,
    cpu_seconds,
    fresh_directory,
    median_of,
    percentile,
    print_footer,
    report_broken,
    scaled,
    spread,
    table,
    worker_argv,
    write_json,
)

import quick
from keyspace import Database

QUEUE = "bench"
APP = "bench_jobs:app"
PREFILL_CHUNK = 1000  # jobs per enqueue_many transaction when pre-enqueueing (untimed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    scale: float
    directory: Path | None
    concurrency: int | None
    batch_size: int | None
    drain_jobs: int
    latency_rate: float
    latency_seconds: float
    latency_idle: float
    timeout: float


def _workers(url: str, processes: int, settings: Settings, temp: Path, records: Records) -> Workers:
    """``quick worker --app bench_jobs:app``, quiet (no log line per job), with the
    settings' ``--concurrency`` and ``--batch-size``."""
    argv = worker_argv(
        url, APP, processes, "--log-level", "warning",
        concurrency=settings.concurrency, batch_size=settings.batch_size,
    )  # fmt: skip
    return Workers(argv, RECORD_ENV, records.path, temp / "log")


# -- workloads: each returns its metrics ------------------------------------------------


def _payload(i: int) -> dict[str, Any]:
    return {"i": i, "t": time.time()}


def _check_enqueued(db: Database, ids: list[str], n: int) -> None:
    if len(ids) != n or len(set(ids)) != n:
        raise BrokenRun(f"{len(set(ids))} distinct ids from {n} enqueues")
    ready = quick.queue_counts(db, QUEUE)["ready"]
    if ready != n:
        raise BrokenRun(f"{ready} jobs ready after {n} enqueues")


def enqueue1(db: Database, settings: Settings) -> dict[str, float]:
    n = scaled(5000, settings.scale)
    for i in range(20):  # warm up on another queue: connections, caches
        quick.enqueue(db, "warm-up", TOPIC, _payload(i))
    enqueue = quick.enqueue
    ids: list[str] = []
    append = ids.append
    started = time.perf_counter()
    for i in range(n):
        append(enqueue(db, QUEUE, TOPIC, {"i": i, "t": time.time()}))
    elapsed = time.perf_counter() - started
    _check_enqueued(db, ids, n)
    return {"jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed}


def _specs(
    start: int, stop: int, queues: int = 1, limit_keys: list[str] | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "queue_id": _queue(i, queues),
            "topic": TOPIC,
            "payload": _payload(i),
            "limit_keys": limit_keys,
        }
        for i in range(start, stop)
    ]


def _queue(i: int, queues: int) -> str:
    """Job ``i``'s queue: QUEUE alone, or one of ``queues`` tenants."""
    return QUEUE if queues == 1 else f"tenant-{i % queues:05d}"


def enqueue100(db: Database, settings: Settings) -> dict[str, float]:
    n = scaled(20000, settings.scale, 100)
    quick.enqueue_many(db, [{"queue_id": "warm-up", "topic": TOPIC, "payload": {}}] * 100)
    enqueue_many = quick.enqueue_many
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, n, 100):
        ids += enqueue_many(db, _specs(start, start + 100))
    elapsed = time.perf_counter() - started
    _check_enqueued(db, ids, n)
    return {"jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed}


#: The keyed limit every job of ``drain2_keyed`` names, and its cap: far above what two
#: workers run at once, so it never binds and the run measures what the limit costs.
BENCH_KEY = "bench-key"
BENCH_KEY_MAX_RUNNING = 100_000


def _drain(
    processes: int, *, tenants: bool = False, latency: str | None = None, keyed: bool = False
) -> Callable[[Database, Settings], dict[str, float]]:
    """A drain of ``settings.drain_jobs`` jobs: all in one queue, or (``tenants``) one job
    in each of as many queues; the workers' URL adds ``?latency=`` when given; ``keyed``:
    every job names one keyed limit (:data:`BENCH_KEY`)."""

    def workload(db: Database, settings: Settings) -> dict[str, float]:
        n = settings.drain_jobs
        queues = n if tenants else 1
        keys = None
        if keyed:
            quick.set_key_limits(db, BENCH_KEY, max_running=BENCH_KEY_MAX_RUNNING)
            keys = [BENCH_KEY]
        prefill = time.perf_counter()
        ids: list[str] = []
        for start in range(0, n, PREFILL_CHUNK):
            stop = min(n, start + PREFILL_CHUNK)
            ids += quick.enqueue_many(db, _specs(start, stop, queues, keys))
        if tenants:
            if len(set(ids)) != n:
                raise BrokenRun(f"{len(set(ids))} distinct ids from {n} enqueues")
        else:
            _check_enqueued(db, ids, n)
        prefill_s = time.perf_counter() - prefill
        temp = Path(db.url.removeprefix("sqlite:///")).parent
        records = Records(temp / "records.txt")
        cpu_before = children_cpu()
        launched = time.time()
        url = db.url if latency is None else f"{db.url}?latency={latency}"
        workers = _workers(url, processes, settings, temp, records)
        try:
            seen = records.wait_for(n, workers, settings.timeout)
        finally:
            workers.stop_cleanly()
        cpu = children_cpu() - cpu_before
        first, repeats = records.first_starts()
        check_all_ran(first, range(n))
        check_drained(db, sorted({_queue(i, queues) for i in range(0, n, max(1, n // 50))}))
        starts = sorted(start for _, start in first.values())
        return {
            "jobs": n,
            "prefill_s": prefill_s,
            "jobs_per_s": (n - 1) / (starts[-1] - starts[0]),
            "jobs_per_s_incl_startup": n / (seen - launched),
            "startup_s": starts[0] - launched,
            "cpu_ms_per_job": cpu * 1000 / n,
            "repeats": repeats,
        }

    return workload


def latency(db: Database, settings: Settings) -> dict[str, float]:
    rate = settings.latency_rate
    n = max(2, round(rate * settings.latency_seconds))
    temp = Path(db.url.removeprefix("sqlite:///")).parent
    records = Records(temp / "records.txt")
    launched = time.time()
    workers = _workers(db.url, 2, settings, temp, records)
    try:
        quick.enqueue(db, QUEUE, TOPIC, {"i": -1, "t": time.time()})  # readiness probe
        ready = records.wait_for(1, workers, settings.timeout) - launched
        time.sleep(settings.latency_idle)
        late = 0
        enqueue = quick.enqueue
        started = time.perf_counter()
        for i in range(n):
            target = started + i / rate
            now = time.perf_counter()
            if target > now:
                time.sleep(target - now)
            elif now - target > 0.005:
                late += 1
            enqueue(db, QUEUE, TOPIC, {"i": i, "t": time.time()})
        produced = time.perf_counter() - started
        records.wait_for(n + 1, workers, settings.timeout)
    finally:
        workers.stop_cleanly()
    first, repeats = records.first_starts()
    check_all_ran(first, range(-1, n))
    check_drained(db, [QUEUE])
    waits = sorted((start - enqueued) * 1000 for i, (enqueued, start) in first.items() if i >= 0)
    return {
        "jobs": n,
        "ready_s": ready,
        "producer_rate": (n - 1) / produced,
        "producer_late_gt5ms": late,
        "p50_ms": percentile(waits, 0.50),
        "p99_ms": percentile(waits, 0.99),
        "max_ms": waits[-1],
        "mean_ms": statistics.fmean(waits),
        "repeats": repeats,
    }


Runner = Callable[[Database, Settings], dict[str, float]]


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    what: str
    runner: Runner
    metrics: tuple[str, ...]  # the first is the headline, compared with the target
    target: str


#: FoundationDB's round trips on a typical cluster: read version, each read, commit (ms).
FDB_LATENCY = "grv:1,read:0.5,commit:5"

WORKLOADS = (
    Workload(
        "enqueue1", "`quick.enqueue`, 1 job per tx", enqueue1, ("jobs_per_s",), ">= 11,200 jobs/s"
    ),
    Workload(
        "enqueue100",
        "`quick.enqueue_many`, 100 jobs per tx",
        enqueue100,
        ("jobs_per_s",),
        ">= 30,000 jobs/s",
    ),
    Workload(
        "drain1",
        "1 worker process",
        _drain(1),
        ("jobs_per_s", "jobs_per_s_incl_startup", "startup_s", "cpu_ms_per_job"),
        "",
    ),
    Workload(
        "drain2",
        "`--processes 2`",
        _drain(2),
        ("jobs_per_s", "jobs_per_s_incl_startup", "startup_s", "cpu_ms_per_job"),
        ">= 15,000 jobs/s",
    ),
    Workload(
        "drain2_tenants",
        "`--processes 2`, one job in each of N queues",
        _drain(2, tenants=True),
        ("jobs_per_s", "jobs_per_s_incl_startup", "startup_s", "cpu_ms_per_job"),
        ">= 0.7x drain2",
    ),
    Workload(
        "drain2_keyed",
        f"`--processes 2`, every job naming one keyed limit (max_running "
        f"{BENCH_KEY_MAX_RUNNING:,})",
        _drain(2, keyed=True),
        ("jobs_per_s", "jobs_per_s_incl_startup", "startup_s", "cpu_ms_per_job"),
        ">= 0.8x drain2",
    ),
    Workload(
        "drain2_latency",
        f"`--processes 2`, `?latency={FDB_LATENCY}`",
        _drain(2, latency=FDB_LATENCY),
        ("jobs_per_s", "jobs_per_s_incl_startup", "startup_s", "cpu_ms_per_job"),
        ">= 0.5x drain2",
    ),
    Workload(
        "latency",
        "`--processes 2`, 200 jobs/s",
        latency,
        ("p50_ms", "p99_ms", "max_ms"),
        "p99 < 1.3 ms",
    ),
)
BY_NAME = {w.name: w for w in WORKLOADS}
TARGETS: dict[str, Callable[[dict[str, float]], bool]] = {
    "enqueue1": lambda m: m["jobs_per_s"] >= 11_200,
    "enqueue100": lambda m: m["jobs_per_s"] >= 30_000,
    "drain2": lambda m: m["jobs_per_s"] >= 15_000,
    "latency": lambda m: m["p99_ms"] < 1.3,
}


def run_once(workload: Workload, settings: Settings) -> dict[str, float]:
    """One run of ``workload`` on a fresh database file, removed afterwards.

    Adds ``other_cpus``: how many CPUs other processes kept busy meanwhile, on average
    (the machine may be shared; NaN where ``/proc/stat`` is missing).
    """
    all_before, mine_before = cpu_seconds()
    started = time.perf_counter()
    with (
        fresh_directory("quick_bench_", settings.directory) as temp,
        quick.open(f"sqlite:///{temp / 'bench.db'}") as db,
    ):
        result = workload.runner(db, settings)
    elapsed = time.perf_counter() - started
    all_after, mine_after = cpu_seconds()
    others = (all_after - all_before) - (mine_after - mine_before)
    return {**result, "other_cpus": max(0.0, others) / elapsed}


# -- report ---------------------------------------------------------------------------


def _fmt(values: list[float], metric: str) -> str:
    return spread(values, 1 if metric.endswith("_ms") else 0 if metric.startswith("jobs") else 2)


HEADERS = {
    "enqueue": ("jobs/s",),
    "drain": (
        "jobs/s, first → last start",
        "jobs/s incl. start-up",
        "start-up (s)",
        "worker CPU ms/job",
    ),
    "latency": ("p50 (ms)", "p99 (ms)", "max (ms)"),
}


def _table(kind: str, rows: list[tuple[Workload, list[dict[str, float]]]]) -> str:
    columns = [("workload", "---"), ("how", "---")]
    columns += [(heading, "--:") for heading in HEADERS[kind]]
    columns += [("target", "---"), ("met", "---"), ("others' CPUs", "--:")]
    cells = []
    for workload, reps in rows:
        check = TARGETS.get(workload.name)
        met = "" if check is None else "yes" if check(median_of(reps)) else "no"
        cells.append(
            [
                f"`{workload.name}`",
                workload.what,
                *(_fmt([r[m] for r in reps], m) for m in workload.metrics),
                workload.target,
                met,
                _fmt([r["other_cpus"] for r in reps], "other_cpus"),
            ]
        )
    return table(columns, cells)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark quick on the sqlite engine: enqueue, drain, pickup latency."
    )
    add_common_arguments(parser, scale="multiply job counts and the latency duration")
    add_only_argument(parser, list(BY_NAME))
    parser.add_argument("--concurrency", type=int, help="quick worker --concurrency")
    parser.add_argument("--batch-size", type=int, help="quick worker --batch-size")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a drain may take (default 600)"
    )
    args = parser.parse_args(argv)
    check_common(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    check_checkout()
    command = command_line("bench", argv)
    settings = Settings(
        scale=args.scale,
        directory=args.dir,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        drain_jobs=scaled(20000, args.scale),
        latency_rate=200.0,
        latency_seconds=10.0 * args.scale,
        latency_idle=2.0,
        timeout=args.timeout,
    )
    workloads = [w for w in WORKLOADS if args.only is None or w.name in args.only]
    code = code_version()
    print(
        f"quick {code}, python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"reps={args.reps}, scale={args.scale:g}, cpus={os.cpu_count()}, "
        f"worker concurrency={args.concurrency or 'default'}, "
        f"batch size={args.batch_size or 'default'}"
    )
    per_rep: dict[str, list[dict[str, float]]] = {w.name: [] for w in workloads}
    started = time.perf_counter()
    try:
        for rep, workload in alternating(workloads, args.reps):
            result = run_once(workload, settings)
            per_rep[workload.name].append(result)
            shown = ", ".join(
                f"{m} {result[m]:,.{2 if m.endswith(('_ms', '_s', '_job')) else 0}f}"
                for m in workload.metrics
            )
            extra = f", {result['repeats']:.0f} repeated" if result.get("repeats") else ""
            print(
                f"rep {rep + 1}/{args.reps}  {workload.name:<10}  {shown}{extra}"
                f"  (other processes: {result['other_cpus']:.2f} cpus)",
                flush=True,
            )
    except BrokenRun as error:
        return report_broken(error)
    total_seconds = time.perf_counter() - started

    for kind, title in (
        ("enqueue", "enqueue, one producer thread"),
        ("drain", f"drain {settings.drain_jobs:,} no-op jobs with real `quick worker` processes"),
        ("latency", f"pickup latency, {settings.latency_seconds:g} s at 200 jobs/s"),
    ):
        rows = [(w, per_rep[w.name]) for w in workloads if w.name.startswith(kind)]
        if rows:
            print(f"\n{title}, median (min-max) of {args.reps}:\n")
            print(_table(kind, rows))
    print(f"\ncode: {code}")
    print_footer(command, total_seconds)
    write_json(
        args.json,
        command,
        argv,
        total_seconds,
        {
            "code": code,
            "reps": args.reps,
            "scale": args.scale,
            "worker_concurrency": args.concurrency,
            "worker_batch_size": args.batch_size,
            "workloads": {
                name: {"median": median_of(reps), "reps": reps} for name, reps in per_rep.items()
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
