"""Consumers that scale out: 1, 2, 4, 8, 16 consumer processes over many busy queues.

Each count runs on a fresh SQLite file with simulated FoundationDB latency on the
workers' URL (``?latency=grv:1,read:0.5,commit:5`` by default) and launches ``quick
worker --processes N --metrics-port P`` over ``--queues`` queues of no-op jobs
(``scripts/bench_jobs.py``).

* **Busy** (the default): every queue holds ``--depth`` jobs when the workers start, and
  this script is their producer: it tops the queues up (one job per queue per batch,
  ``enqueue_many`` on the URL without latency) whenever the jobs started come within
  ``--depth`` jobs per queue of the jobs enqueued, so no queue runs dry. After
  ``--warmup`` seconds it measures a window of ``--seconds``: the jobs started in it, the
  workers' CPU in it (``/proc`` of the worker session's processes), and each consumer's
  Prometheus metrics scraped at both ends (claim rounds committed, their tries, the
  process's retries by error code, ``quick_transaction_retries_total{code}``).
* **Drain** (``--drain``, the first version): ``--jobs`` jobs spread round-robin over the
  queues are enqueued first (untimed) and the workers run until every one has started;
  the queues empty as they go, so the tail has few due queues.

Reported per count: jobs/s, worker CPU ms per job (user + system of the supervisor and
its consumers), the share of claim-round tries that conflicted (tries - rounds over
tries: every retried claim try on the sqlite engine is a 1020 unless the retries line
says otherwise), and the retries by code.

    .venv/bin/python scripts/bench_scaleout.py                       # busy, 1..16
    .venv/bin/python scripts/bench_scaleout.py --counts 1,2 --seconds 5
    .venv/bin/python scripts/bench_scaleout.py --drain --jobs 10000  # drain everything
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench_jobs import RECORD_ENV, TOPIC
from benchlib import (
    BrokenRun,
    Records,
    Workers,
    children_cpu,
    code_version,
    fresh_directory,
    report_broken,
    worker_argv,
)
from prometheus_client.parser import text_string_to_metric_families

import quick

APP = "bench_jobs:app"
CHUNK = 1000
#: Jobs (one per queue) in each of the producer's top-up transactions.
TOP_UP = 50


def _free_port_run(count: int) -> int:
    """A port P with P..P+count-1 free on loopback (checked once, then used at once: from
    a random start, so two runs at once seldom pick the same ports between check and use)."""
    start = random.randrange(19100, 50000)
    for base in [*range(start, 60000, 97), *range(19100, start, 97)]:
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise BrokenRun("no free run of ports for the metrics servers")


def _scrape(port: int, wait: float = 60.0) -> dict[tuple[str, str], float]:
    """One consumer's metrics, waiting up to ``wait`` seconds for its server to listen."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, sample.labels.get("code", "")] = sample.value
    return out


class _Producer:
    """Tops the busy queues up: one job in each of ``TOP_UP`` consecutive queues per
    transaction, cycling through all of them (a producer's batch of a realistic size:
    one transaction over all 1,000 queues lives long enough to meet a claim round's
    commit nearly every time, and retries for seconds)."""

    def __init__(self, db: Any, queues: int) -> None:
        self.db = db
        self.queues = queues
        self.enqueued = 0
        self._next = 0

    def add(self, count: int) -> None:
        """Enqueue ``count`` jobs, the next ``count`` queues' one each."""
        specs = []
        for _ in range(count):
            queue = f"busy-{self._next % self.queues:05d}"
            specs.append(
                {
                    "queue_id": queue,
                    "topic": TOPIC,
                    "payload": {"i": self.enqueued + len(specs), "t": time.time()},
                }
            )
            self._next += 1
        quick.enqueue_many(self.db, specs)
        self.enqueued += count


def _tally(scraped: list[dict[tuple[str, str], float]]) -> tuple[float, float, dict[str, float]]:
    """Claim rounds, claim-round tries and retries by code, summed over the consumers."""
    rounds = sum(s.get(("quick_claim_rounds_total", ""), 0) for s in scraped)
    tries = sum(s.get(("quick_claim_round_tries_total", ""), 0) for s in scraped)
    retries: dict[str, float] = {}
    for s in scraped:
        for (name, code), value in s.items():
            if name == "quick_transaction_retries_total":
                retries[code] = retries.get(code, 0) + value
    return rounds, tries, retries


def _session_cpu(session: int) -> float:
    """CPU seconds (user + system) the live processes of ``session`` have used so far."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == session:  # field 6 of stat(5): the session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _figures(
    processes: int, jobs: int, seconds: float, cpu: float, before: Any, after: Any
) -> dict[str, Any]:
    rounds, tries, retries = (
        after[0] - before[0],
        after[1] - before[1],
        {code: n - before[2].get(code, 0) for code, n in after[2].items()},
    )
    return {
        "processes": processes,
        "jobs_per_s": jobs / seconds,
        "cpu_ms_per_job": cpu * 1000 / jobs,
        "claim_rounds": rounds,
        "conflict_share": (tries - rounds) / tries if tries else 0.0,
        "retries": {code: n for code, n in retries.items() if n},
    }


def run_busy(
    processes: int, queues: int, depth: int, warmup: float, seconds: float, latency: str, temp: Path
) -> dict[str, Any]:
    """One count over busy queues: this script tops them up while the workers run."""
    url = f"sqlite:///{temp / 'scale.db'}"
    with quick.open(url) as db:
        producer = _Producer(db, queues)
        for _ in range(depth * queues // CHUNK):
            producer.add(CHUNK)
        records = Records(temp / "records.txt")
        port = _free_port_run(processes)
        argv = worker_argv(f"{url}?latency={latency}", APP, processes, "--log-level", "warning")
        argv += ["--metrics-port", str(port)]
        workers = Workers(argv, RECORD_ENV, records.path, temp / "worker.log")
        try:
            marks = []
            records.wait_for(1, workers, timeout=120)  # the warm-up counts from the first job
            start = time.monotonic()
            for until in (start + warmup, start + warmup + seconds):
                while (now := time.monotonic()) < until:
                    if not workers.alive():
                        raise BrokenRun(f"workers exited:\n{workers.tail()}")
                    started = records.count()
                    if producer.enqueued - started < depth * queues:
                        producer.add(TOP_UP)
                    else:
                        time.sleep(0.005)
                scraped = [_scrape(port + i) for i in range(processes)]
                marks.append(
                    (now, records.count(), _session_cpu(workers.proc.pid), _tally(scraped))
                )
        finally:
            workers.stop_cleanly()
    (t0, n0, cpu0, tally0), (t1, n1, cpu1, tally1) = marks
    if n1 - n0 < 1:
        raise BrokenRun("no job started in the measured window")
    return _figures(processes, n1 - n0, t1 - t0, cpu1 - cpu0, tally0, tally1)


def run_drain(processes: int, jobs: int, queues: int, latency: str, temp: Path) -> dict[str, Any]:
    """One count that drains ``jobs`` enqueued first (raises BrokenRun when a job did not run)."""
    url = f"sqlite:///{temp / 'scale.db'}"
    with quick.open(url) as db:
        for start in range(0, jobs, CHUNK):
            specs = [
                {
                    "queue_id": f"busy-{i % queues:05d}",
                    "topic": TOPIC,
                    "payload": {"i": i, "t": time.time()},
                }
                for i in range(start, min(jobs, start + CHUNK))
            ]
            quick.enqueue_many(db, specs)
    records = Records(temp / "records.txt")
    port = _free_port_run(processes)
    argv = worker_argv(f"{url}?latency={latency}", APP, processes, "--log-level", "warning")
    argv += ["--metrics-port", str(port)]
    cpu_before = children_cpu()
    workers = Workers(argv, RECORD_ENV, records.path, temp / "worker.log")
    try:
        records.wait_for(jobs, workers, timeout=600)
        scraped = [_scrape(port + i) for i in range(processes)]
    finally:
        workers.stop_cleanly()
    cpu = children_cpu() - cpu_before
    first, _ = records.first_starts()
    if len(first) != jobs:
        raise BrokenRun(f"{len(first)} of {jobs} jobs ran")
    starts = sorted(start for _, start in first.values())
    return _figures(
        processes,
        jobs - 1,
        starts[-1] - starts[0],
        cpu * (jobs - 1) / jobs,
        (0, 0, {}),
        _tally(scraped),
    )


def _row(got: dict[str, Any]) -> str:
    codes = ", ".join(f"{code}: {int(n)}" for code, n in sorted(got["retries"].items()))
    return (
        f"| {got['processes']} | {got['jobs_per_s']:,.0f} | {got['cpu_ms_per_job']:.2f} | "
        f"{got['claim_rounds']:,.0f} | {100 * got['conflict_share']:.1f}% | {codes or 'none'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,2,4,8,16", help="consumer process counts")
    parser.add_argument("--queues", type=int, default=1_000, help="busy queues")
    parser.add_argument("--depth", type=int, default=10, help="jobs kept in each busy queue")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--seconds", type=float, default=10.0, help="the measured window")
    parser.add_argument("--drain", action="store_true", help="drain --jobs enqueued first")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per count (--drain)")
    parser.add_argument("--latency", default="grv:1,read:0.5,commit:5", help="?latency= value")
    parser.add_argument("--dir", type=Path, help="where the scratch files go")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    if args.drain:
        print(f"quick {code_version()}, drain: {args.jobs:,} jobs over {args.queues:,} queues")
    else:
        print(
            f"quick {code_version()}, busy: {args.queues:,} queues topped up to {args.depth} "
            f"jobs each, {args.warmup:g} s warm-up, {args.seconds:g} s measured"
        )
    print(f"workers' URL: ?latency={args.latency}")
    print("| processes | jobs/s | worker CPU ms/job | claim rounds | conflicted tries | retries |")
    print("|--:|--:|--:|--:|--:|---|")
    try:
        for processes in counts:
            with fresh_directory("quick-scaleout-", args.dir) as temp:
                if args.drain:
                    got = run_drain(processes, args.jobs, args.queues, args.latency, temp)
                else:
                    got = run_busy(
                        processes, args.queues, args.depth, args.warmup, args.seconds,
                        args.latency, temp,
                    )  # fmt: skip
            print(_row(got), flush=True)
    except BrokenRun as error:
        return report_broken(error)
    print("command: " + " ".join([".venv/bin/python", *sys.argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
