"""CPU time per job of a claim round and its settlement, in one process: one deep queue
against one job in each of N queues.

Runs the consumer's own transactional functions (:func:`quick.claim_rounds.claim_round`
with the worker's page of 2,000 pointer-index entries, :func:`quick.outcomes.settle_batch`)
on a fresh SQLite file, timing each with ``time.process_time``; no worker processes, so
the figures move less with the machine's load than ``bench.py``'s drain rates. Compare
checkouts by running it from each (``PYTHONPATH``) in turn, alternating.

    .venv/bin/python scripts/bench_claim_cpu.py            # 5,000 jobs, 3 rounds
    .venv/bin/python scripts/bench_claim_cpu.py --jobs 2000 --rounds 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import quick
from keyspace import open as open_db
from keyspace.retry import Tries
from quick.claim_rounds import claim_round
from quick.outcomes import Attempt, job_config, settle_batch

APP = quick.App()
BATCH = 200
SCAN = 2000  # the worker's default page (consumer.config.scan_limit)


@APP.job("t")
def _noop(payload: object, meta: quick.Meta) -> None:
    """The job every round runs: nothing."""


def run(jobs: int, queues: int) -> tuple[float, float]:
    """(claim, settle) CPU microseconds per job for ``jobs`` jobs over ``queues`` queues."""
    with tempfile.TemporaryDirectory() as temp, open_db(f"sqlite:///{Path(temp)}/c.db") as db:
        specs = [
            {"queue_id": "q" if queues == 1 else f"t{i % queues:07d}", "topic": "t", "payload": i}
            for i in range(jobs)
        ]
        for start in range(0, jobs, BATCH):
            quick.enqueue_many(db, specs[start : start + BATCH])
        now = int(time.time() * 1000) + 1000

        def body(tr: Any) -> Any:
            return claim_round(
                tr, "bench", now, limit=BATCH, lease_ms=30_000, tries=Tries(), watch=False,
                scan_limit=SCAN,
            )  # fmt: skip

        done, claim_s, settle_s = 0, 0.0, 0.0
        while done < jobs:
            started = time.process_time()
            found = db.transact(body)
            claimed = time.process_time()
            settle_batch(db, [Attempt(c, job_config(APP, c)) for c in found.claims], now_ms=now)
            settle_s += time.process_time() - claimed
            claim_s += claimed - started
            if not found.claims:
                raise RuntimeError(f"a claim round found nothing after {done} of {jobs} jobs")
            done += len(found.claims)
        return claim_s * 1e6 / jobs, settle_s * 1e6 / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per shape (default 5,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both shapes")
    args = parser.parse_args()
    print("| deep claim | deep settle | tenants claim | tenants settle | ratio (claim + settle) |")
    print("|--:|--:|--:|--:|--:|")
    for _ in range(args.rounds):
        deep, tenants = run(args.jobs, 1), run(args.jobs, args.jobs)
        ratio = sum(tenants) / sum(deep)
        cells = " | ".join(f"{us:.0f}" for us in (*deep, *tenants))
        print(f"| {cells} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
