"""Consumers that scale out: 1, 2, 4, 8, 16 consumer processes over many busy queues.

Each count runs on a fresh SQLite file with simulated FoundationDB latency on the
workers' URL (``?latency=grv:1,read:0.5,commit:5`` by default): ``--jobs`` no-op jobs
(``scripts/bench_jobs.py``) spread round-robin over ``--queues`` queues are enqueued
(untimed), then ``quick worker --processes N --metrics-port P`` is launched and left to
run until every job has recorded its start. Before stopping it, the driver scrapes each
consumer's Prometheus metrics: claim rounds committed, their tries, and the process's
retries by error code (``quick_transaction_retries_total{code}``).

Reported per count: jobs/s (first to last job start), worker CPU ms per job (user +
system of the supervisor and its consumers), the share of claim-round tries that
conflicted (tries - rounds over tries: every retried claim try on the sqlite engine is
a 1020 unless the retries line says otherwise), and the retries by code.

    .venv/bin/python scripts/bench_scaleout.py                       # 1..16, 20,000 jobs
    .venv/bin/python scripts/bench_scaleout.py --counts 1,2 --jobs 4000
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
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


def _free_port_run(count: int) -> int:
    """A port P with P..P+count-1 free on loopback (checked once, then used at once)."""
    for base in range(19100, 60000, 97):
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


def _scrape(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, sample.labels.get("code", "")] = sample.value
    return out


def run(processes: int, jobs: int, queues: int, latency: str, temp: Path) -> dict[str, Any]:
    """One count: its figures (raises BrokenRun when a job did not run)."""
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
    rounds = sum(s.get(("quick_claim_rounds_total", ""), 0) for s in scraped)
    tries = sum(s.get(("quick_claim_round_tries_total", ""), 0) for s in scraped)
    retries: dict[str, float] = {}
    for s in scraped:
        for (name, code), value in s.items():
            if name == "quick_transaction_retries_total":
                retries[code] = retries.get(code, 0) + value
    return {
        "processes": processes,
        "jobs_per_s": (jobs - 1) / (starts[-1] - starts[0]),
        "cpu_ms_per_job": cpu * 1000 / jobs,
        "claim_rounds": rounds,
        "conflict_share": (tries - rounds) / tries if tries else 0.0,
        "retries": retries,
    }


def _row(got: dict[str, Any]) -> str:
    codes = ", ".join(f"{code}: {int(n)}" for code, n in sorted(got["retries"].items()))
    return (
        f"| {got['processes']} | {got['jobs_per_s']:,.0f} | {got['cpu_ms_per_job']:.2f} | "
        f"{got['claim_rounds']:,.0f} | {100 * got['conflict_share']:.1f}% | {codes or 'none'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,2,4,8,16", help="consumer process counts")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per count")
    parser.add_argument("--queues", type=int, default=1_000, help="busy queues")
    parser.add_argument("--latency", default="grv:1,read:0.5,commit:5", help="?latency= value")
    parser.add_argument("--dir", type=Path, help="where the scratch files go")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(f"quick {code_version()}, {args.jobs:,} jobs over {args.queues:,} queues")
    print(f"workers' URL: ?latency={args.latency}")
    print("| processes | jobs/s | worker CPU ms/job | claim rounds | conflicted tries | retries |")
    print("|--:|--:|--:|--:|--:|---|")
    try:
        for processes in counts:
            with fresh_directory("quick-scaleout-", args.dir) as temp:
                got = run(processes, args.jobs, args.queues, args.latency, temp)
            print(_row(got), flush=True)
    except BrokenRun as error:
        return report_broken(error)
    print("command: " + " ".join([".venv/bin/python", *sys.argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
