"""Count what each transaction of a workflow step reads and writes, against a plain job.

Runs in one process, no workers and no timing: ``quick.testing.drain`` claims and
settles as a consumer does (claim rounds, group-committed settlements), over a wrapper
of the database that counts, per committed transaction, by the function it ran:

* ``txns``: transactions committed, ``retries``: tries that ended in an error,
* ``keys read``: distinct keys read by point reads (``get``, ``get_many``, watches),
  ``ranges``: range reads, ``round trips``: point-read batches with a new key plus
  range reads (what a remote cluster waits for),
* ``keys written``: keys set, cleared, versionstamped or atomically changed (each
  distinct key once), and ``bytes``: keys plus values written.

The same counts are taken for ``--runs`` runs of each shape of
``scripts/bench_workflow.py`` (chain, fan-out, and a map of ``--map`` instances: its
workflows, with no-op handlers of the same topics here) and for
as many plain jobs as those shapes have steps; each row is then divided by the steps
(or jobs, or map instances) it drained. Run it from the repository root::

    .venv/bin/python scripts/count_step_keys.py
    .venv/bin/python scripts/count_step_keys.py --runs 50 --map 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench_workflow import chain, fanout, mapped

import quick
import workflow
from keyspace.protocol import WRITE_METHODS, Database, Transaction
from keyspace.retry import run_transaction
from quick.testing import drain

T = TypeVar("T")
STEP_TOPIC = "bench:step"
JOB_TOPIC = "bench:job"
STEPS = 10  # as many as each run of bench_workflow's chain and fan-out has


@dataclass(slots=True)
class Counts:
    """Totals over the committed transactions of one kind."""

    txns: int = 0
    retries: int = 0
    keys_read: int = 0
    ranges: int = 0
    round_trips: int = 0
    keys_written: int = 0
    bytes_written: int = 0

    def add(self, other: Counts) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class _Try:
    read: set[bytes] = field(default_factory=set)
    written: dict[bytes, int] = field(default_factory=dict)
    ranges: int = 0
    round_trips: int = 0


class _View:
    def __init__(self, owner: CountingTransaction, view: Any) -> None:
        self._owner = owner
        self._view = view

    def get(self, key: bytes) -> bytes | None:
        self._owner.reads([key])
        value: bytes | None = self._view.get(key)
        return value

    def get_range(self, begin: bytes, end: bytes, **options: Any) -> Any:
        self._owner.range()
        return self._view.get_range(begin, end, **options)

    def get_range_startswith(self, prefix: bytes, **options: Any) -> Any:
        self._owner.range()
        return self._view.get_range_startswith(prefix, **options)


#: The write methods counted by :meth:`CountingTransaction.__getattr__` (conflict ranges
#: are not writes; ``clear`` and ``clear_range`` are counted by their own methods).
_WRITES = {name for name in WRITE_METHODS if not name.startswith(("add_write", "clear"))}


class CountingTransaction(_View):
    """A transaction that counts its reads and writes into its database's :class:`Counts`."""

    def __init__(self, db: CountingDatabase, inner: Transaction) -> None:
        super().__init__(self, inner)
        self._db = db
        self._inner = inner
        self.snapshot = _View(self, inner.snapshot)
        self.try_ = _Try()
        self.kind = "?"

    def reads(self, keys: Sequence[bytes]) -> None:
        new = [key for key in keys if key not in self.try_.read and key not in self.try_.written]
        if new:
            self.try_.round_trips += 1
            self.try_.read.update(new)

    def range(self) -> None:
        self.try_.ranges += 1
        self.try_.round_trips += 1

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        self.reads(keys)
        return self._inner.get_many(keys, snapshot=snapshot)

    def watch(self, key: bytes) -> Any:
        self.reads([key])
        return self._inner.watch(key)

    def clear(self, key: bytes) -> None:
        self.try_.written[key] = len(key)
        self._inner.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self.try_.written[begin] = len(begin) + len(end)
        self._inner.clear_range(begin, end)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in _WRITES:
            return attribute

        def write(key: bytes, value: bytes) -> None:
            self.try_.written[key] = len(key) + len(value)
            attribute(key, value)

        return write

    def commit(self) -> None:
        self._inner.commit()
        self._db.record(self.kind, self.try_, committed=True)
        self.try_ = _Try()

    def on_error(self, error: BaseException) -> None:
        self._db.record(self.kind, self.try_, committed=False)
        self.try_ = _Try()
        self._inner.on_error(error)


class CountingDatabase:
    """A database of the seam over ``inner`` whose transactions are counted by kind."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.url = inner.url
        self.namespace = inner.namespace
        self.counts: dict[str, Counts] = defaultdict(Counts)

    def record(self, kind: str, done: _Try, *, committed: bool) -> None:
        counts = self.counts[kind]
        if not committed:
            counts.retries += 1
            return
        counts.txns += 1
        counts.keys_read += len(done.read)
        counts.ranges += done.ranges
        counts.round_trips += done.round_trips
        counts.keys_written += len(done.written)
        counts.bytes_written += sum(done.written.values())

    def create_transaction(self) -> Transaction:
        return CountingTransaction(self, self.inner.create_transaction())

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        name = getattr(fn, "__name__", "?")

        def body(tr: Any, *args: Any, **kwargs: Any) -> T:
            tr.kind = _KINDS.get(name, name)
            return fn(tr, *args, **kwargs)

        return run_transaction(self, body, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> CountingDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Names of the transaction bodies, in words.
_KINDS = {"<lambda>": "claim", "_settle_all": "settle"}


# -- the workloads ---------------------------------------------------------------------


def _app() -> quick.App:
    app = quick.App()

    @app.job(STEP_TOPIC)
    def step(payload: Any, meta: quick.Meta) -> None:
        return None

    @app.job("bench:list")
    def listing(payload: Any, meta: quick.Meta) -> list[int]:
        return list(range(payload))

    @app.job(JOB_TOPIC)
    def job(payload: Any, meta: quick.Meta) -> None:
        return None

    return app


def _measure(
    directory: Path, name: str, fill: Callable[[Database], int]
) -> tuple[int, dict[str, Counts]]:
    """Fill a fresh store with ``fill`` (uncounted), then drain it counting; (units, counts)."""
    with quick.open(f"sqlite:///{directory / name}.db") as inner:
        units = fill(inner)
        db = CountingDatabase(inner)
        drain(db, _app(), max_jobs=10**9)
    return units, dict(db.counts)


def _jobs(count: int) -> Callable[[Database], int]:
    def fill(db: Database) -> int:
        specs = [{"queue_id": f"q{i % 10}", "topic": JOB_TOPIC, "payload": i} for i in range(count)]
        for first in range(0, count, 500):
            quick.enqueue_many(db, specs[first : first + 500])
        return count

    return fill


def _runs(make: Callable[[], workflow.Workflow], runs: int, payload: Any = None) -> Any:
    def fill(db: Database) -> int:
        wf = make()
        for i in range(runs):
            workflow.start_run(db, wf, payload, queue_id=f"q{i % 10}")
        return runs * len(wf.steps)

    return fill


def _row(label: str, units: int, counts: dict[str, Counts], unit: str) -> list[str]:
    lines = []
    total = Counts()
    for kind in sorted(counts):
        total.add(counts[kind])
    for kind, c in [*sorted(counts.items()), ("all", total)]:
        lines.append(
            f"| {label} | {kind} | {c.txns / units:.3f} | {c.retries / units:.3f} "
            f"| {c.keys_read / units:.1f} | {c.ranges / units:.2f} | {c.round_trips / units:.2f} "
            f"| {c.keys_written / units:.1f} | {c.bytes_written / units:,.0f} |"
        )
    return [f"per {unit}:", *lines]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs per shape (default 100)")
    parser.add_argument("--map", type=int, default=10_000, help="map instances (default 10000)")
    args = parser.parse_args(argv)
    header = (
        "| workload | txn | txns | retries | keys read | ranges | round trips "
        "| keys written | bytes written |\n|---|---|--:|--:|--:|--:|--:|--:|--:|"
    )
    with tempfile.TemporaryDirectory(prefix="count_step_keys_") as temp:
        directory = Path(temp)
        print(header)
        work: list[tuple[str, Callable[[Database], int], str]] = [
            ("plain jobs", _jobs(args.runs * STEPS), "job"),
            ("chain", _runs(chain, args.runs), "step"),
            ("fan-out", _runs(fanout, args.runs), "step"),
        ]
        if args.map:
            work.append(("map", _runs(mapped, 1, args.map), "map instance"))
        for label, fill, unit in work:
            units, counts = _measure(directory, label.replace(" ", "_"), fill)
            if unit == "map instance":
                units = args.map
            for line in _row(label, units, counts, unit)[1:]:
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
