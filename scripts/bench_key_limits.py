"""Count what keyed limits and the per-minute counters cost, independent of machine load.

Enqueues 4,000 no-op jobs on one queue of a fresh embedded store, then claims them 10 at a
time and settles each batch with ``settle_batch`` until the queue is empty, under cProfile;
prints the Python function calls and SQLite statements executed per job. Wall-clock rates on a
shared machine swing too much to show a few percent; these counts do not.

    .venv/bin/python scripts/bench_key_limits.py plain      # no job names a key
    .venv/bin/python scripts/bench_key_limits.py keyed      # every job names one keyed limit
    .venv/bin/python scripts/bench_key_limits.py nofin      # plain, per-minute counters off
    PYTHONPATH=/tmp/main-tree .venv/bin/python scripts/bench_key_limits.py plain   # another tree
"""

from __future__ import annotations

import cProfile
import importlib
import pstats
import sys
import tempfile
from typing import Any

import quick
from quick.app import JobConfig
from quick.outcomes import Attempt, settle_batch

JOBS = 4_000
STATEMENTS = (
    "<method 'execute' of 'sqlite3.Connection' objects>",
    "<method 'executemany' of 'sqlite3.Connection' objects>",
)


def main(mode: str) -> None:
    config = JobConfig(topic="t", handler=lambda payload, meta: None)
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as temp, quick.open(f"sqlite:///{temp}/k.db") as db:
        if mode == "keyed":
            quick.set_key_limits(db, "k", max_running=100_000)
            extra = {"limit_keys": ["k"]}
        if mode == "nofin":
            throughput = importlib.import_module("quick.throughput")  # absent from older trees
            setattr(throughput, "count_finished", lambda *args: None)  # noqa: B010
        for _ in range(0, JOBS, 1000):
            specs = [{"queue_id": "q", "topic": "t", "payload": i, **extra} for i in range(1000)]
            quick.enqueue_many(db, specs)
        profile = cProfile.Profile()
        profile.enable()
        while claims := quick.claim(db, "q", "w", limit=10):
            settle_batch(db, [Attempt(claim, config, None) for claim in claims])
        profile.disable()
    stats = pstats.Stats(profile)
    rows = stats.stats.items()  # type: ignore[attr-defined]
    statements = sum(v[1] for k, v in rows if k[2] in STATEMENTS)
    calls = stats.total_calls  # type: ignore[attr-defined]
    per_job = f"{calls / JOBS:.0f} Python calls/job, {statements / JOBS:.2f} SQLite statements/job"
    print(f"{mode}: {per_job}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "plain")
