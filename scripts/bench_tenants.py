"""A million tenants: one no-op job in each of N queues, drained by ``quick worker``.

Usage::

    .venv/bin/python scripts/bench_tenants.py                  # N = 1,000,000, two rounds
    .venv/bin/python scripts/bench_tenants.py --queues 20000 --rounds 1
    .venv/bin/python scripts/bench_tenants.py --queues 1000000 --fill-only /tmp/big.db

Each round fills the store with ``quick.enqueue_many`` (:data:`FILL_CHUNK` jobs per
transaction; the fill rate is reported), then drains it with a real ``quick worker
--processes 2 --keep-finished 0`` (the ``bench_jobs`` no-op handler, as ``scripts/bench.py``
runs it). The workers keep running after the last job until the drained queues' pointers are
collected (at their jobs' lease expiry), then stop. Reported per round: drain jobs/s (first to
last start), worker CPU per job, each worker process's peak RSS (``VmHWM`` from ``/proc``,
the supervisor and its children sampled through the run), the keys left per key shape (decoded
by ``keyspace.layout.decode``, as ``quick inspect keyspace`` does), and the file's size after a
WAL checkpoint with SQLite's ``freelist_count``. Before the big rounds, the same drain of
:data:`REFERENCE_QUEUES` one-job queues on a fresh file gives the reference rate for the
issue's 0.8x target, in the same sitting.

``--fill-only PATH`` fills a store at PATH and exits: the big store the operator tools
(``quick queues``, ``quick check --deep``, the dashboard) are timed on (``bench_tools.py``);
``--filled PATH`` then drains it as round 1 (a copy of it: the file is changed and kept).
"""

from __future__ import annotations

import argparse
import collections
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_jobs import RECORD_ENV, TOPIC
from benchlib import (
    BrokenRun,
    Records,
    Workers,
    check_all_ran,
    check_checkout,
    code_version,
    command_line,
    fresh_directory,
    print_footer,
    report_broken,
    table,
    worker_argv,
    write_json,
)

import quick
from keyspace import Database, layout
from keyspace.subspace import Subspace
from quick.checking import walk

APP = "bench_jobs:app"
FILL_CHUNK = 1000  # jobs per enqueue_many transaction
REFERENCE_QUEUES = 20_000  # the drain2_tenants shape of scripts/bench.py
SAMPLE_EVERY = 1.0  # seconds between looks at the workers' /proc entries
LOG_EVERY = 60.0  # seconds between progress lines (jobs run, each worker's RSS)
COLLECT_POLL = 5.0  # seconds between looks at the pointers left after the drain
#: Key shapes that belong to one queue (``keyspace.layout.SHAPES``' meanings).
PER_QUEUE = (
    "pointer index entry", "queue pointer", "queue lease", "job", "ready job",
    "scheduled or leased job", "queue counter", "unique key reservation",
)  # fmt: skip


def _queue(i: int) -> str:
    return f"tenant-{i:07d}"


def fill(db: Database, n: int, offset: int = 0) -> float:
    """One job in each of queues ``0..n-1`` (payload ``i`` counts from ``offset``); seconds."""
    enqueue_many = quick.enqueue_many
    started = time.perf_counter()
    for start in range(0, n, FILL_CHUNK):
        specs = [
            {"queue_id": _queue(i), "topic": TOPIC, "payload": {"i": offset + i, "t": time.time()}}
            for i in range(start, min(n, start + FILL_CHUNK))
        ]
        enqueue_many(db, specs)
        if start and start % 100_000 == 0:
            print(f"  filled {start:,}", flush=True)
    return time.perf_counter() - started


# -- memory of the worker processes ----------------------------------------------------------


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from each task's ``children`` file)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                todo += [int(c) for c in children]
        except OSError:
            continue
    return found


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class MemorySampler:
    """Samples the peak RSS (``VmHWM``) of a process tree every :data:`SAMPLE_EVERY` s, and
    the RSS each process had at the first and last look."""

    def __init__(self, root: int, done: Callable[[], int]) -> None:
        self.root = root
        self.done = done  # jobs run so far, for the log line every LOG_EVERY s
        self.peak_kb: dict[int, int] = {}
        self.first_kb: dict[int, int] = {}
        self.last_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = logged = time.monotonic()
        while not self._stop.is_set():
            self.sample()
            if time.monotonic() - logged >= LOG_EVERY:
                logged = time.monotonic()
                rss = sorted(kb // 1024 for pid, kb in self.last_kb.items() if pid != self.root)
                print(
                    f"  +{logged - started:,.0f} s: {self.done():,} jobs run, "
                    f"worker RSS {rss} MB, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            self._stop.wait(SAMPLE_EVERY)

    def sample(self) -> None:
        for pid in _descendants(self.root):
            hwm, rss = _status_kb(pid, "VmHWM"), _status_kb(pid, "VmRSS")
            if hwm is None or rss is None:
                continue
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), hwm)
            self.first_kb.setdefault(pid, rss)
            self.last_kb[pid] = rss

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system, their reaped children's too) the tree has used."""
        total = 0
        for pid in _descendants(self.root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict[str, float]:
        """Stop sampling; peak MB of the supervisor and of the largest worker."""
        self.sample()
        self._stop.set()
        self._thread.join()
        workers = [kb for pid, kb in self.peak_kb.items() if pid != self.root]
        return {
            "supervisor_peak_mb": self.peak_kb.get(self.root, 0) / 1024,
            "worker_peak_mb": max(workers, default=0) / 1024,
            "worker_start_mb": max(
                (kb for pid, kb in self.first_kb.items() if pid != self.root), default=0
            )
            / 1024,
        }


# -- what the store holds -------------------------------------------------------------------


def keys_by_shape(db: Database) -> dict[str, int]:
    """How many keys of each shape the store holds, decoded as ``quick inspect`` does."""
    counts: collections.Counter[str] = collections.Counter()
    begin, end = layout.ROOT.range()
    for key, _value in walk(db, begin, end, 10_000):
        shape, _items, _fields = layout.decode(key)
        counts[shape.meaning if shape is not None else "other"] += 1
    return dict(counts)


def _count(db: Database, subspace: Subspace, cap: int) -> int:
    begin, end = subspace.range()
    return len(db.transact(lambda tr: tr.snapshot.get_range(begin, end, limit=cap)))


def file_figures(path: Path) -> dict[str, float]:
    """The file after a WAL checkpoint: its size, and SQLite's pages and free pages."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        con.close()
    return {
        "file_mb": path.stat().st_size / 1e6,
        "pages": pages,
        "free_pages": free,
        "free_mb": free * page_size / 1e6,
    }


# -- one drain ------------------------------------------------------------------------------


def drain(
    db: Database, path: Path, n: int, offset: int, timeout: float, collect: bool
) -> dict[str, Any]:
    """Drain the ``n`` one-job queues just filled with ``quick worker --processes 2
    --keep-finished 0``; with ``collect``, keep the workers until no pointer is left."""
    temp = path.parent
    records = Records(temp / f"records-{offset}.txt")
    argv = worker_argv(
        db.url, APP, 2, "--log-level", "warning", "--keep-finished", "0"
    )  # fmt: skip
    launched = time.time()
    workers = Workers(argv, RECORD_ENV, records.path, temp / "log")
    memory = MemorySampler(workers.proc.pid, records.count)
    collected_s = None
    try:
        seen = records.wait_for(n, workers, timeout)
        cpu = memory.cpu_seconds()  # the drain's, not the wait for collection's
        if collect:
            deadline = time.monotonic() + timeout
            while _count(db, layout.POINTERS, 1000) and time.monotonic() < deadline:
                time.sleep(COLLECT_POLL)
            collected_s = time.time() - seen
    finally:
        mem = memory.stop()
        workers.stop_cleanly()
    first, repeats = records.first_starts()
    check_all_ran(first, range(offset, offset + n))
    starts = sorted(start for _, start in first.values())
    return {
        "queues": n,
        "jobs_per_s": (n - 1) / (starts[-1] - starts[0]),
        "startup_s": starts[0] - launched,
        "cpu_ms_per_job": cpu * 1000 / n,
        "repeats": repeats,
        "collected_after_s": collected_s,
        **mem,
    }


def round_on(
    db: Database, path: Path, n: int, number: int, timeout: float, *, prefilled: bool = False
) -> dict[str, Any]:
    """Fill (unless ``prefilled``) and drain ``n`` queues; what is left in the store and the
    file afterwards."""
    filled = None if prefilled else fill(db, n, offset=number * n)
    if filled is not None:
        print(f"round {number + 1}: filled {n:,} queues at {n / filled:,.0f} jobs/s", flush=True)
    result = drain(db, path, n, number * n, timeout, collect=True)
    result["fill_jobs_per_s"] = None if filled is None else n / filled
    result["keys_left"] = keys_by_shape(db)
    result.update(file_figures(path))
    print(
        f"round {number + 1}: drained at {result['jobs_per_s']:,.0f} jobs/s, "
        f"{result['cpu_ms_per_job']:.2f} ms CPU/job, "
        f"worker peak {result['worker_peak_mb']:.0f} MB, "
        f"file {result['file_mb']:.1f} MB ({result['free_pages']:,} free pages), "
        f"keys left {result['keys_left']}",
        flush=True,
    )
    return result


def reference(parent: Path | None, timeout: float) -> dict[str, Any]:
    """The same drain of :data:`REFERENCE_QUEUES` one-job queues on a fresh file."""
    with fresh_directory("quick_tenants_ref_", parent) as temp:
        path = temp / "ref.db"
        with quick.open(f"sqlite:///{path}") as db:
            fill(db, REFERENCE_QUEUES)
            result = drain(db, path, REFERENCE_QUEUES, 0, timeout, collect=False)
    print(
        f"reference: {REFERENCE_QUEUES:,} queues drained at {result['jobs_per_s']:,.0f} jobs/s, "
        f"{result['cpu_ms_per_job']:.2f} ms CPU/job",
        flush=True,
    )
    return result


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queues", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=2, help="fill-and-drain rounds on one file")
    parser.add_argument("--no-reference", action="store_true", help="skip the 20,000-queue run")
    parser.add_argument("--fill-only", type=Path, metavar="PATH", help="fill PATH and exit")
    parser.add_argument(
        "--filled",
        type=Path,
        metavar="PATH",
        help="round 1 drains this store, filled by --fill-only with as many --queues (kept)",
    )
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds a drain may take")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary files")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    check_checkout()
    command = command_line("bench_tenants", argv)
    started = time.perf_counter()
    if args.fill_only is not None:
        with quick.open(f"sqlite:///{args.fill_only}") as db:
            seconds = fill(db, args.queues)
        print(f"filled {args.queues:,} queues at {args.queues / seconds:,.0f} jobs/s")
        print(file_figures(args.fill_only))
        return 0
    code = code_version()
    print(f"quick {code}, {args.queues:,} queues, {args.rounds} rounds, load {os.getloadavg()}")
    results: dict[str, Any] = {"code": code, "queues": args.queues, "rounds": []}
    try:
        if not args.no_reference:
            results["reference"] = reference(args.dir, args.timeout)
        with fresh_directory("quick_tenants_", args.dir) as temp:
            path = args.filled or temp / "tenants.db"
            with quick.open(f"sqlite:///{path}") as db:
                for number in range(args.rounds):
                    prefilled = number == 0 and args.filled is not None
                    results["rounds"].append(
                        round_on(db, path, args.queues, number, args.timeout, prefilled=prefilled)
                    )
                    print(f"load {os.getloadavg()}", flush=True)
    except BrokenRun as error:
        return report_broken(error)
    _report(results)
    total = time.perf_counter() - started
    print_footer(command, total)
    write_json(args.json, command, argv, total, results)
    return 0


def _report(results: dict[str, Any]) -> None:
    ref = results.get("reference")
    columns = [
        ("run", "---"), ("fill jobs/s", "--:"), ("drain jobs/s", "--:"), ("vs 20k", "--:"),
        ("CPU ms/job", "--:"), ("worker peak MB", "--:"), ("per-queue keys left", "--:"),
        ("file MB", "--:"), ("free pages", "--:"),
    ]  # fmt: skip
    rows = []
    if ref is not None:
        rows.append(
            [f"{REFERENCE_QUEUES:,} queues", "", f"{ref['jobs_per_s']:,.0f}", "1.00x",
             f"{ref['cpu_ms_per_job']:.2f}", f"{ref['worker_peak_mb']:.0f}", "", "", ""]
        )  # fmt: skip
    for number, r in enumerate(results["rounds"]):
        left = sum(v for k, v in r["keys_left"].items() if k in PER_QUEUE)
        ratio = f"{r['jobs_per_s'] / ref['jobs_per_s']:.2f}x" if ref else ""
        rows.append(
            [f"{results['queues']:,} queues, round {number + 1}",
             "filled before" if r["fill_jobs_per_s"] is None else f"{r['fill_jobs_per_s']:,.0f}",
             f"{r['jobs_per_s']:,.0f}", ratio, f"{r['cpu_ms_per_job']:.2f}",
             f"{r['worker_peak_mb']:.0f}", f"{left:,}", f"{r['file_mb']:.1f}",
             f"{r['free_pages']:,}"]
        )  # fmt: skip
    print()
    print(table(columns, rows))


if __name__ == "__main__":
    sys.exit(main())
