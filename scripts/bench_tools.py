"""Time the operator tools on a big store (e.g. the million one-job queues that
``scripts/bench_tenants.py --fill-only PATH`` writes): ``quick queues`` (first page, a page
in the middle, every queue), the dashboard's overview pages (Flask test client, as
``scripts/bench_dashboard.py`` requests them), the workers' queue-depth refresh
(``ConsumerMetrics.refresh_depth``), and ``quick check --deep`` (its time, peak RSS and
first progress line)::

    .venv/bin/python scripts/bench_tools.py /tmp/big.db [--reps 3] [--no-deep]

The store is only read. Each command runs as a real process; times are wall clock.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import quick
from consumer.metrics import ConsumerMetrics
from quick.dashboard import create_app


def _cpu() -> float:
    """CPU seconds of this process and its finished children (load-independent)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(run: Callable[[], object], reps: int) -> str:
    """Median and worst wall-clock ms, and median CPU ms, of ``reps`` runs."""
    times, cpus = [], []
    for _ in range(reps):
        started, cpu = time.perf_counter(), _cpu()
        run()
        times.append((time.perf_counter() - started) * 1000)
        cpus.append((_cpu() - cpu) * 1000)
    return (
        f"{statistics.median(times):>10,.0f} {max(times):>10,.0f} {statistics.median(cpus):>10,.0f}"
    )


def _quick(url: str, *args: str) -> Callable[[], object]:
    argv = [sys.executable, "-m", "quick", "--db", url, *args]
    return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def _page(client: object, url: str) -> Callable[[], object]:
    def get() -> object:
        response = client.get(url)  # type: ignore[attr-defined]
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
        return response

    return get


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="the sqlite store")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-deep", action="store_true", help="skip quick check --deep")
    parser.add_argument("--middle", default="tenant-0500000", help="--after for a middle page")
    args = parser.parse_args()
    url = f"sqlite:///{args.path}"
    print(f"store {args.path} ({args.path.stat().st_size / 1e6:,.0f} MB), load {os.getloadavg()}")
    print(f"{'what':<40} {'median ms':>10} {'worst ms':>10} {'CPU ms':>10}")
    with quick.open(url) as db:
        client = create_app(db).test_client()
        metrics = ConsumerMetrics()
        timings = {
            "quick queues (first 1,000)": _quick(url, "queues"),
            "quick queues --after (1,000 mid-store)": _quick(url, "queues", "--after", args.middle),
            "dashboard overview": _page(client, "/"),
            "dashboard overview, mid-store page": _page(client, f"/?after={args.middle}"),
            "metrics refresh_depth (depth_scan 1000)": lambda: metrics.refresh_depth(db),
        }
        for name, run in timings.items():
            print(f"{name:<40} {_timed(run, args.reps)}", flush=True)
    started, cpu = time.perf_counter(), _cpu()
    lines = subprocess.run(
        [sys.executable, "-m", "quick", "--db", url, "queues", "--limit", "0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.count("\n")
    elapsed = time.perf_counter() - started
    print(
        f"quick queues --limit 0: {lines - 1:,} queues in {elapsed:,.1f} s, "
        f"{_cpu() - cpu:,.1f} s CPU (streamed)"
    )
    if not args.no_deep:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started, cpu = time.perf_counter(), _cpu()
        done = subprocess.run(
            [sys.executable, "-m", "quick", "--db", url, "check", "--deep"],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        progress = done.stderr.splitlines()
        print(
            f"quick check --deep: exit {done.returncode} in {elapsed:,.1f} s, "
            f"peak RSS {peak / 1024:,.0f} MB (children so far: {before / 1024:,.0f} MB)"
        )
        print(f"  {done.stdout.strip().splitlines()[-1]}")
        print(f"  {len(progress)} progress lines; first: {progress[0] if progress else None}")
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
