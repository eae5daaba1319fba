"""Benchmark slow jobs at the head of a batch: are they spread over the workers, or hoarded?

The workload: ``--slow`` jobs of ``--slow-seconds`` (default 10 of 3 s) enqueued first,
then ``--fast`` jobs of 1 ms (default 400) in the same queue (``--slow-last``: the other
way round, so the workers have learnt a short handler time when they meet the slow
ones); two worker processes (``quick worker --processes 2``) at ``--concurrency``
(default 8) drain them. With 16 slots every slow job can start at once, so the ideal
drain takes about one slow job plus the fast jobs' work spread over every slot; a
worker that leases slow jobs it cannot start soon while the other worker sits idle takes
two or three times that.

Reported per run, all from the handlers' own records (each appends
``<i> <t_start> <t_end> <pid>`` to one ``O_APPEND`` file):

* ``makespan_s``: first job start to last job end; ``ratio``: makespan over the ideal
  (target: at most 1.5);
* ``incl_startup_s``: worker launch to last job end;
* ``slow_waves``: how many distinct start times (0.5 s apart or more) the slow jobs had,
  and ``slow_pids``: over how many worker processes they ran.

Every run checks that each job ran and that the queue is empty afterwards. The machine
may be shared: compare runs of one invocation only (``--reps`` alternates nothing here;
run the script against two checkouts in turn to compare code).

Run it from the repository root::

    .venv/bin/python scripts/bench_hoarding.py --reps 3
    .venv/bin/python scripts/bench_hoarding.py --batch-size 10
    .venv/bin/python scripts/bench_hoarding.py --slow-last
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench_jobs import RECORD_ENV, append_record
from benchlib import (
    BrokenRun,
    Records,
    Workers,
    add_common_arguments,
    check_checkout,
    check_common,
    check_drained,
    code_version,
    command_line,
    fresh_directory,
    median_of,
    print_footer,
    report_broken,
    spread,
    worker_argv,
    write_json,
)

import quick

__all__ = ["app"]

QUEUE = "hoarding"
TOPIC = "bench:sleep"
FAST_SECONDS = 0.001
#: Slow jobs starting this far apart belong to different waves.
WAVE_GAP = 0.5
TARGET_RATIO = 1.5

app = quick.App()


@app.job(TOPIC)
def sleep(payload: Any, meta: quick.Meta) -> None:
    """Sleep ``payload["s"]`` seconds, then append ``i t_start t_end pid`` to the record."""
    started = time.time()
    time.sleep(payload["s"])
    ended = time.time()
    append_record(b"%d %.6f %.6f %d\n" % (payload["i"], started, ended, os.getpid()))


def _rows(records: Records) -> list[tuple[int, float, float, int]]:
    """``(i, t_start, t_end, pid)`` of every job recorded."""
    out = []
    for line in records.lines():
        i, start, end, pid = line.split()
        out.append((int(i), float(start), float(end), int(pid)))
    return out


def _waves(starts: list[float]) -> int:
    ordered = sorted(starts)
    return 1 + sum(1 for a, b in itertools.pairwise(ordered) if b - a >= WAVE_GAP)


def run_once(args: argparse.Namespace) -> dict[str, float]:
    """One drain on a fresh store; its metrics."""
    slow, fast = args.slow, args.fast
    ideal = args.slow_seconds + (fast * FAST_SECONDS) / (2 * args.concurrency)
    with fresh_directory("quick_hoarding_", args.dir) as temp:
        url = f"sqlite:///{temp / 'bench.db'}"
        with quick.open(url) as db:
            slow_specs = [
                {"queue_id": QUEUE, "topic": TOPIC, "payload": {"i": i, "s": args.slow_seconds}}
                for i in range(slow)
            ]
            fast_specs = [
                {"queue_id": QUEUE, "topic": TOPIC, "payload": {"i": i, "s": FAST_SECONDS}}
                for i in range(slow, slow + fast)
            ]
            earlier, later = (
                (fast_specs, slow_specs) if args.slow_last else (slow_specs, fast_specs)
            )
            quick.enqueue_many(db, earlier)
            time.sleep(0.005)  # the second lot becomes visible after the first: behind it
            quick.enqueue_many(db, later)
            records = Records(temp / "records.txt")
            argv = worker_argv(
                url, "bench_hoarding:app", 2, "--log-level", "warning",
                concurrency=args.concurrency, batch_size=args.batch_size,
            )  # fmt: skip
            launched = time.time()
            workers = Workers(argv, RECORD_ENV, records.path, temp / "log")
            try:
                records.wait_for(slow + fast, workers, args.timeout)
            finally:
                workers.stop_cleanly()
            rows = _rows(records)
            check_drained(db, [QUEUE])
    ran = {i for i, *_ in rows}
    if ran != set(range(slow + fast)):
        raise BrokenRun(f"{slow + fast - len(ran)} jobs never ran")
    first = min(start for _, start, _, _ in rows)
    last = max(end for _, _, end, _ in rows)
    slow_rows = [r for r in rows if r[0] < slow]
    return {
        "makespan_s": last - first,
        "ideal_s": ideal,
        "ratio": (last - first) / ideal,
        "incl_startup_s": last - launched,
        "slow_waves": _waves([start for _, start, _, _ in slow_rows]),
        "slow_pids": len({pid for *_, pid in slow_rows}),
        "repeats": len(rows) - len(ran),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark slow jobs at the head of a batch over two worker processes."
    )
    add_common_arguments(parser, scale=None)
    parser.add_argument("--slow", type=int, default=10, help="slow jobs (default 10)")
    parser.add_argument(
        "--slow-seconds", type=float, default=3.0, help="each slow job's time (default 3)"
    )
    parser.add_argument("--fast", type=int, default=400, help="1 ms jobs after them (default 400)")
    parser.add_argument(
        "--slow-last",
        action="store_true",
        help="enqueue the slow jobs behind the fast ones (the workers know a short handler "
        "time when they meet them)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="per worker (default 8)")
    parser.add_argument("--batch-size", type=int, help="quick worker --batch-size")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a drain may take (default 120)"
    )
    args = parser.parse_args(argv)
    check_common(parser, args)
    if args.slow < 1 or args.fast < 0 or args.slow_seconds <= 0 or args.concurrency < 1:
        parser.error("--slow, --slow-seconds and --concurrency must be positive, --fast >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    check_checkout()
    command = command_line("bench_hoarding", argv)
    code = code_version()
    print(
        f"quick {code}, python {platform.python_version()}, cpus={os.cpu_count()}: "
        f"{args.slow} jobs of {args.slow_seconds:g} s {'after' if args.slow_last else 'before'} "
        f"{args.fast} of 1 ms, two workers "
        f"at concurrency {args.concurrency}, batch size {args.batch_size or 'default'}"
    )
    reps: list[dict[str, float]] = []
    started = time.perf_counter()
    try:
        for rep in range(args.reps):
            result = run_once(args)
            reps.append(result)
            print(
                f"rep {rep + 1}/{args.reps}  makespan {result['makespan_s']:.2f} s "
                f"(ideal {result['ideal_s']:.2f} s, ratio {result['ratio']:.2f}), "
                f"incl. start-up {result['incl_startup_s']:.2f} s, slow jobs in "
                f"{result['slow_waves']:.0f} waves on {result['slow_pids']:.0f} workers",
                flush=True,
            )
    except BrokenRun as error:
        return report_broken(error)
    total = time.perf_counter() - started
    ratio = statistics.median(r["ratio"] for r in reps)
    print(
        f"\nmakespan {spread([r['makespan_s'] for r in reps], 2)} s, ratio to ideal "
        f"{spread([r['ratio'] for r in reps], 2)} (target <= {TARGET_RATIO}: "
        f"{'met' if ratio <= TARGET_RATIO else 'missed'})"
    )
    print(f"code: {code}")
    print_footer(command, total)
    write_json(
        args.json, command, argv, total, {"code": code, "median": median_of(reps), "reps": reps}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
