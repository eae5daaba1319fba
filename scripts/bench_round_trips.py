"""Read round trips per transaction of the listings, cron and workflow settlement.

Builds the store of ``tests/long_store.py`` (500 queues, 300 runs, 300 schedules, a
60-branch workflow) in a temp directory, then runs each operation through the latency
probe of ``tests/latency_probe.py`` on ``?latency=read:MS`` and prints, per operation,
how many transactions it made, the most read round trips one of them made, their total,
and the longest transaction's seconds. Round trips are counted, not timed, so they do
not depend on the machine's load; the seconds do. Run it from the repository root::

    .venv/bin/python scripts/bench_round_trips.py            # about a minute
    .venv/bin/python scripts/bench_round_trips.py --read-ms 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import quick
import workflow
from quick import inspection
from quick.dashboard.reads import read_overview
from tests.latency_probe import Probe
from tests.long_store import FAN, app, build_store, run_all, start_fan
from workflow.views import page_runs


def _queues(probe: Probe) -> Any:
    paged = getattr(inspection, "read_all_queues", None)
    return paged(probe) if paged else inspection.read_queues(probe)


def operations(store: Path, probe: Probe) -> list[tuple[str, Callable[[], Any]]]:
    """(name, operation) pairs; the workflow ones set their run up first, unmeasured."""
    later = quick.jobs.now_ms() + 3_600_000
    steer = start_fan(store, "bench-steer")
    fan_in = start_fan(store, "bench-in")
    fail = start_fan(store, "bench-fail")
    start_fan(store, "bench-out")
    run_all(probe, "bench-steer")
    run_all(probe, "bench-in")
    run_all(probe, "bench-fail")
    (root,) = quick.claim(probe, "bench-out", "w")
    branches = quick.claim(probe, "bench-in", "w", limit=FAN)
    for claim in branches[:-1]:
        quick.run_claim(probe, app(), claim)
    failing = quick.claim(probe, "bench-fail", "w")[0]
    failing_step = (failing.extension or {})["sk"]
    return [
        ("quick queues (all 501)", lambda: _queues(probe)),
        ("list_queues(limit=1000)", lambda: quick.list_queues(probe, limit=1000)),
        ("list_jobs(limit=100)", lambda: quick.list_jobs(probe, "deep", limit=100)),
        ("dlq list", lambda: inspection.read_dead(probe, None)),
        ("dashboard overview", lambda: read_overview(probe, quick.jobs.now_ms())),
        ("cron list", lambda: inspection.read_schedules(probe)),
        ("activate_due (300 due)", lambda: quick.activate_due(probe, now=later)),
        ("list_runs (300+)", lambda: workflow.list_runs(probe, limit=1000)),
        ("page_runs(limit=50)", lambda: page_runs(probe, limit=50)),
        ("inspect_run (62 steps)", lambda: workflow.inspect_run(probe, steer)),
        ("settle root, fan-out 60", lambda: quick.run_claim(probe, app(), root)),
        ("settle last branch, join 60", lambda: quick.run_claim(probe, app(), branches[-1])),
        ("pause_run (60 queued)", lambda: workflow.pause_run(probe, steer)),
        ("resume_run", lambda: workflow.resume_run(probe, steer)),
        ("cancel_run (60 queued)", lambda: workflow.cancel_run(probe, steer)),
        (
            "fail a step (59 withdrawn)",
            lambda: quick.run_claim(probe, app({failing_step}), failing),
        ),
        ("retry_run (61 reset)", lambda: workflow.retry_run(probe, fail)),
        ("inspect_run after join", lambda: workflow.inspect_run(probe, fan_in)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--read-ms", type=float, default=10.0, help="simulated read latency")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "quick.db"
        build_store(store)
        url = f"sqlite:///{store}?latency=read:{args.read_ms:g}&retry_limit=1"
        with quick.open(url) as db:
            probe = Probe(db)
            print(f"{'operation':<30} {'txns':>5} {'most RT':>8} {'total RT':>9} {'longest s':>10}")
            for name, operation in operations(store, probe):
                with probe.watching() as tries:
                    try:
                        operation()
                        failed = ""
                    except quick.StorageError as error:
                        failed = f"  fails: {error.code}"
                most = max((t.round_trips for t in tries), default=0)
                total = sum(t.round_trips for t in tries)
                longest = max((t.elapsed for t in tries), default=0.0)
                print(f"{name:<30} {len(tries):>5} {most:>8} {total:>9} {longest:>10.2f}{failed}")


if __name__ == "__main__":
    main()
