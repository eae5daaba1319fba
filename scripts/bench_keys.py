"""Count, per job, the keys one job costs on each path: enqueue, claim round, settlement.

Runs the consumer's own transactional functions (:func:`quick.enqueue_many`,
:func:`quick.claim_rounds.claim_round`, :func:`quick.outcomes.settle_batch`) on a fresh
SQLite file, with the engine's reader and write buffer wrapped to count calls: point
reads (keys), range reads (calls, the ranges they read, which are several when issued
together, and rows), and writes (sets, clears, atomic ops), each
divided by the jobs the path handled. ``deep``: N jobs in one queue; ``tenants``: one job
in each of N queues. A count is what the engine was asked (a read the transaction's
read-your-writes cache answers still counts), so the figures compare code paths, not
I/O. Deterministic; no timing.

    .venv/bin/python scripts/bench_keys.py              # N = 2,000, batch 200
    .venv/bin/python scripts/bench_keys.py --jobs 5000 --batch 100
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import quick
from keyspace import open as open_db
from keyspace.retry import Tries
from keyspace.ryw import WriteBuffer
from keyspace.sqlite_reads import Reader
from quick.claim_rounds import claim_round
from quick.outcomes import Attempt, job_config, settle_batch

COUNTED = (
    "point reads",
    "range reads",
    "ranges",
    "range rows",
    "sets",
    "clears",
    "atomic ops",
    "commits",
)


class Counts(collections.Counter[str]):
    """Engine calls by kind."""


def _wrap(cls: Any, name: str, count: Callable[[Counts, tuple[Any, ...], Any], None]) -> Any:
    original = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if _active is not None:
            count(_active, args, result)
        return result

    setattr(cls, name, wrapper)
    return original


_active: Counts | None = None


def _install() -> None:
    _wrap(Reader, "get", lambda c, a, r: c.update({"point reads": 1}))
    _wrap(Reader, "get_many", lambda c, a, r: c.update({"point reads": len(a[0])}))

    def ranged(c: Counts, a: tuple[Any, ...], r: Any) -> None:
        c.update({"range reads": 1, "ranges": 1, "range rows": len(r)})

    _wrap(Reader, "get_range", ranged)

    def together(c: Counts, a: tuple[Any, ...], r: Any) -> None:
        c.update({"range reads": 1, "ranges": len(r), "range rows": sum(map(len, r))})

    _wrap(Reader, "get_ranges", together)
    _wrap(WriteBuffer, "set", lambda c, a, r: c.update({"sets": 1}))
    _wrap(WriteBuffer, "clear", lambda c, a, r: c.update({"clears": 1}))
    _wrap(WriteBuffer, "clear_range", lambda c, a, r: c.update({"clears": 1}))
    _wrap(WriteBuffer, "atomic", lambda c, a, r: c.update({"atomic ops": 1}))


@contextmanager
def counting(into: Counts) -> Iterator[Counts]:
    """Count engine calls made in the block into ``into``."""
    global _active
    _active = into
    try:
        yield into
    finally:
        _active = None


def _counted_transact(db: Any, counts: Counts, fn: Callable[..., Any], *args: Any) -> Any:
    with counting(counts):
        result = db.transact(fn, *args)
    counts["commits"] += 1
    return result


APP = quick.App()


@APP.job("t")
def _noop(payload: object, meta: quick.Meta) -> None:
    """The job every count runs: nothing."""


def _round(tr: Any, now: int, batch: int, tries: Tries) -> Any:
    return claim_round(tr, "bench", now, limit=batch, lease_ms=30_000, tries=tries, watch=False)


def run(jobs: int, queues: int, batch: int) -> dict[str, dict[str, float]]:
    """Per-job counts of the three paths for ``jobs`` jobs spread over ``queues`` queues."""
    with tempfile.TemporaryDirectory() as temp, open_db(f"sqlite:///{Path(temp)}/k.db") as db:
        specs = [
            {"queue_id": "q" if queues == 1 else f"t{i % queues:07d}", "topic": "t", "payload": i}
            for i in range(jobs)
        ]
        enq = Counts()
        for start in range(0, jobs, batch):
            with counting(enq):
                quick.enqueue_many(db, specs[start : start + batch])
            enq["commits"] += 1
        claim, settle = Counts(), Counts()
        now = int(time.time() * 1000) + 1000
        done = 0
        while done < jobs:
            found = _counted_transact(db, claim, _round, now, batch, Tries())
            if not found.claims:
                raise RuntimeError(f"a claim round found nothing after {done} of {jobs} jobs")
            done += len(found.claims)
            with counting(settle):
                settle_batch(db, [Attempt(c, job_config(APP, c)) for c in found.claims], now_ms=now)
            settle["commits"] += 1
        return {
            name: {kind: counts[kind] / jobs for kind in COUNTED}
            for name, counts in (("enqueue", enq), ("claim", claim), ("settle", settle))
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per shape (default 2,000)")
    parser.add_argument("--batch", type=int, default=200, help="claim limit and enqueue batch")
    args = parser.parse_args()
    _install()
    print(f"keys per job, {args.jobs:,} jobs, batches of {args.batch}")
    print("| shape | path | " + " | ".join(COUNTED) + " |")
    print("|---|---|" + "--:|" * len(COUNTED))
    for shape, queues in (("deep", 1), ("tenants", args.jobs)):
        for path, counts in run(args.jobs, queues, args.batch).items():
            cells = " | ".join(f"{counts[k]:.2f}" for k in COUNTED)
            print(f"| {shape} | {path} | {cells} |")


if __name__ == "__main__":
    main()
