"""Time every dashboard page on a store with 100,000 jobs and 10,000 workflow runs.

Fills a fresh sqlite store (``--jobs`` jobs: half in one deep queue, half over
``--queues`` tenant queues; ``--dead`` dead letters; ``--finished`` completed jobs for
the throughput figures; ``--runs`` runs of a 4-step workflow, a tenth of them cancelled;
one cron schedule), then requests each page through the Flask test client (the whole
app: routing, the store's transactions and the templates; no sockets) ``--reps`` times
and prints the median and worst milliseconds per page. Run it from the repository root::

    .venv/bin/python scripts/bench_dashboard.py                     # about 2 min on 2 cores
    .venv/bin/python scripts/bench_dashboard.py --jobs 10000 --runs 1000 --reps 3
    .venv/bin/python scripts/bench_dashboard.py --keep /tmp/big.db  # then: quick --db ... dashboard
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import quick
import workflow
from keyspace.protocol import Database, Transaction
from quick.dashboard import create_app

FLOW = (
    workflow.Workflow("bench.order")
    .step("fetch", topic="bench:step")
    .step("a", topic="bench:step", after=["fetch"])
    .step("b", topic="bench:step", after=["fetch"])
    .step("join", topic="bench:step", after=["a", "b"])
)


def fill(db: Database, args: argparse.Namespace) -> dict[str, str]:
    """Write the workload; return ids the page list needs."""
    started = time.perf_counter()
    half = args.jobs // 2
    for start in range(0, half, 1000):
        quick.enqueue_many(
            db,
            [
                {"queue_id": "deep", "topic": "bench:job", "payload": {"i": i}, "priority": i % 5}
                for i in range(start, min(start + 1000, half))
            ],
        )
    for start in range(0, args.jobs - half, 1000):
        quick.enqueue_many(
            db,
            [
                {"queue_id": f"tenant-{i % args.queues:05d}", "topic": "bench:job", "payload": i}
                for i in range(start, min(start + 1000, args.jobs - half))
            ],
        )
    for i in range(args.dead):
        quick.enqueue(db, "dlq", "bench:job", {"i": i}, max_attempts=1)
    while claims := quick.claim(db, "dlq", "bench", limit=500):
        for claim in claims:
            quick.fail(db, claim, "bench failure")
    done = 0
    while done < args.finished:
        for claim in quick.claim(db, "deep", "bench", limit=min(500, args.finished - done)):
            quick.complete(db, claim)
            done += 1
    runs = []
    for start in range(0, args.runs, 100):

        def hundred(tr: Transaction, first: int = start) -> list[str]:
            count = min(100, args.runs - first)
            return [
                workflow.start_run(tr, FLOW, {"n": first + k}, queue_id="wf") for k in range(count)
            ]

        runs += db.transact(hundred)
    for run_id in runs[: args.runs // 10]:
        workflow.cancel_run(db, run_id)
    quick.schedule(db, "nightly", "0 3 * * *", "deep", "bench:job", {})
    print(f"filled in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    job = quick.list_jobs(db, "deep", limit=1)[0].id
    dead = quick.list_dead(db, "dlq", limit=1)[0].job_id
    return {"job": job, "dead": dead, "run": runs[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--dead", type=int, default=1000)
    parser.add_argument("--finished", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="Write the store here and keep it.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or Path(scratch) / "bench.db"
        with quick.open(f"sqlite:///{path}") as db:
            ids = fill(db, args)
            pages = {
                "overview": "/",
                "overview, page 2": "/?after=tenant-00199",
                "queue (deep, 100 jobs)": "/queue?name=deep",
                "queue (deep, 1000 jobs)": "/queue?name=deep&limit=1000",
                "job": f"/job?queue=deep&id={ids['job']}",
                "dead letters (all)": "/dead",
                "dead letters (queue)": "/dead?queue=dlq",
                "dead letter job": f"/job?queue=dlq&id={ids['dead']}",
                "cron": "/cron",
                "runs (any status)": "/runs",
                "runs (cancelled)": "/runs?status=cancelled",
                "runs (workflow, running)": "/runs?workflow=bench.order&status=running",
                "run": f"/run?id={ids['run']}",
            }
            client = create_app(db).test_client()
            print(f"{'page':<28} {'median ms':>10} {'worst ms':>10}")
            for name, url in pages.items():
                times = []
                for _ in range(args.reps):
                    started = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        print(f"{name}: HTTP {response.status_code}", file=sys.stderr)
                        return 1
                print(f"{name:<28} {statistics.median(times):>10.1f} {max(times):>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
