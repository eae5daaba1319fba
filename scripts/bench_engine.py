"""Benchmark the embedded sqlite engine against raw stdlib ``sqlite3`` doing the same work.

What it measures: transactions per second for four workloads, once through the
engine (``keyspace.open("sqlite:///...")`` and ``db.transact(fn)``) and once through
plain ``sqlite3`` running the same statements by hand, in the same process and run:

==============  =============================================================
``set1``        one ``set(key, 64-byte value)`` per transaction, distinct keys
``set100``      100 such sets per transaction
``rmw1``        read a ``<q`` counter, add one, write it back, per transaction
``range1000``   read a pre-loaded 1,000-key range (serializable read)
==============  =============================================================

The raw side is the floor the engine is built on: ``sqlite3.connect(path,
isolation_level=None)`` in WAL mode with the same ``synchronous`` setting, a
``kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID`` table, and per transaction
``BEGIN IMMEDIATE`` ... ``COMMIT`` (``BEGIN`` ... ``COMMIT`` around the range read).
Both sides use the same keys (``Subspace(("bench",)).pack((i,))``, packed before
timing) and values. Every run gets fresh files in a new temporary directory, warms
up, then times its transactions; engine and raw runs are interleaved (their order
alternating between repetitions) and repeated ``--reps`` times. The report gives the
median tx/s per side, the ratio engine/raw and whether it meets its target (>= 0.5
for ``set100`` and ``range1000``, >= 0.33 for ``set1`` and ``rmw1``). The exit code
is 0 whatever the ratios: this is a benchmark, not a test.

Run it from the repository root::

    .venv/bin/python scripts/bench_engine.py                      # about a minute
    .venv/bin/python scripts/bench_engine.py --sync full --scale 0.3
    .venv/bin/python scripts/bench_engine.py --reps 5 --json bench.json

``--scale`` multiplies every workload's transaction count, ``--dir`` picks where the
temporary files go (their file system decides what ``--sync full`` costs).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    add_common_arguments,
    check_common,
    command_line,
    fresh_directory,
    print_footer,
    rate,
    table,
    write_json,
)

import keyspace
from keyspace import Database, Subspace, Transaction

SUBSPACE = Subspace(("bench",))
VALUE = bytes(range(64))  # the 64-byte value every set writes
COUNTER_KEY = SUBSPACE.pack(("counter",))
RANGE_KEYS = 1000
BATCH = 100
COUNTER = struct.Struct("<q")
SYNC_PRAGMA = {"normal": "NORMAL", "full": "FULL"}

UPSERT = "INSERT OR REPLACE INTO kv(k, v) VALUES(?, ?)"
SELECT_ONE = "SELECT v FROM kv WHERE k = ?"
SELECT_RANGE = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k"


@dataclass(frozen=True)
class Keys:
    """Keys packed before timing, shared by both sides."""

    distinct: list[bytes]  # for the set workloads: one fresh key per set
    begin: bytes  # the range1000 range
    end: bytes


# -- engine side: transaction bodies and loops --------------------------------------


def _tx_set1(tr: Transaction, key: bytes) -> None:
    tr.set(key, VALUE)


def _tx_set100(tr: Transaction, keys: Sequence[bytes]) -> None:
    for key in keys:
        tr.set(key, VALUE)


def _tx_rmw1(tr: Transaction) -> None:
    value = tr.get(COUNTER_KEY)
    count = COUNTER.unpack(value)[0] if value is not None else 0
    tr.set(COUNTER_KEY, COUNTER.pack(count + 1))


def _tx_range1000(tr: Transaction, begin: bytes, end: bytes) -> int:
    return len(tr.get_range(begin, end))


def engine_set1(db: Database, keys: Keys, start: int, n: int) -> None:
    transact, distinct = db.transact, keys.distinct
    for i in range(start, start + n):
        transact(_tx_set1, distinct[i])


def engine_set100(db: Database, keys: Keys, start: int, n: int) -> None:
    transact, distinct = db.transact, keys.distinct
    for i in range(start, start + n):
        transact(_tx_set100, distinct[i * BATCH : (i + 1) * BATCH])


def engine_rmw1(db: Database, keys: Keys, start: int, n: int) -> None:
    transact = db.transact
    for _ in range(n):
        transact(_tx_rmw1)


def engine_range1000(db: Database, keys: Keys, start: int, n: int) -> None:
    transact, begin, end = db.transact, keys.begin, keys.end
    for _ in range(n):
        transact(_tx_range1000, begin, end)


def _engine_load_range(db: Database, keys: Keys) -> None:
    def load(tr: Transaction) -> None:
        for i in range(RANGE_KEYS):
            tr.set(SUBSPACE.pack((i,)), VALUE)

    db.transact(load)


def _engine_count(db: Database, keys: Keys) -> int:
    def count(tr: Transaction) -> int:
        return len(tr.snapshot.get_range(keys.begin, keys.end))

    return db.transact(count)


def _engine_counter(db: Database) -> int:
    value = db.transact(lambda tr: tr.get(COUNTER_KEY))
    return COUNTER.unpack(value)[0] if value is not None else 0


# -- raw side: the same statements through sqlite3 ---------------------------------


def raw_set1(conn: sqlite3.Connection, keys: Keys, start: int, n: int) -> None:
    execute, distinct = conn.execute, keys.distinct
    for i in range(start, start + n):
        execute("BEGIN IMMEDIATE")
        execute(UPSERT, (distinct[i], VALUE))
        execute("COMMIT")


def raw_set100(conn: sqlite3.Connection, keys: Keys, start: int, n: int) -> None:
    execute, executemany, distinct = conn.execute, conn.executemany, keys.distinct
    for i in range(start, start + n):
        execute("BEGIN IMMEDIATE")
        executemany(UPSERT, [(key, VALUE) for key in distinct[i * BATCH : (i + 1) * BATCH]])
        execute("COMMIT")


def raw_rmw1(conn: sqlite3.Connection, keys: Keys, start: int, n: int) -> None:
    execute = conn.execute
    for _ in range(n):
        execute("BEGIN IMMEDIATE")
        row = execute(SELECT_ONE, (COUNTER_KEY,)).fetchone()
        count = COUNTER.unpack(row[0])[0] if row is not None else 0
        execute(UPSERT, (COUNTER_KEY, COUNTER.pack(count + 1)))
        execute("COMMIT")


def raw_range1000(conn: sqlite3.Connection, keys: Keys, start: int, n: int) -> None:
    execute, bounds = conn.execute, (keys.begin, keys.end)
    for _ in range(n):
        execute("BEGIN")
        execute(SELECT_RANGE, bounds).fetchall()
        execute("COMMIT")


def _raw_load_range(conn: sqlite3.Connection, keys: Keys) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(UPSERT, [(SUBSPACE.pack((i,)), VALUE) for i in range(RANGE_KEYS)])
    conn.execute("COMMIT")


def _raw_count(conn: sqlite3.Connection, keys: Keys) -> int:
    return len(conn.execute(SELECT_RANGE, (keys.begin, keys.end)).fetchall())


def _raw_counter(conn: sqlite3.Connection) -> int:
    row = conn.execute(SELECT_ONE, (COUNTER_KEY,)).fetchone()
    return COUNTER.unpack(row[0])[0] if row is not None else 0


# -- workloads -------------------------------------------------------------------

EngineLoop = Callable[[Database, Keys, int, int], None]
RawLoop = Callable[[sqlite3.Connection, Keys, int, int], None]


@dataclass(frozen=True)
class Workload:
    name: str
    per_transaction: str  # for the table
    count: int  # timed transactions at --scale 1
    target: float  # engine/raw ratio to meet
    engine: EngineLoop
    raw: RawLoop
    keys_per_tx: int  # distinct keys each transaction consumes (0: none)


# Counts keep a default run (3 reps, both sides, warm-ups) near 30 s on 2 cores.
WORKLOADS = (
    Workload("set1", "1 set (64 B)", 15000, 0.33, engine_set1, raw_set1, 1),
    Workload("set100", "100 sets (64 B)", 1200, 0.5, engine_set100, raw_set100, BATCH),
    Workload("rmw1", "get + set of a counter", 10000, 0.33, engine_rmw1, raw_rmw1, 0),
    Workload(
        "range1000",
        "1,000-key range read",
        1500,
        0.5,
        engine_range1000,
        raw_range1000,
        0,
    ),
)


def _warmup(count: int) -> int:
    return max(20, count // 10)


def _expected_rows(workload: Workload, transactions: int) -> int | None:
    """Rows in the subspace range after ``transactions`` (None: not checked)."""
    if workload.name == "range1000":
        return RANGE_KEYS
    if workload.keys_per_tx:
        return transactions * workload.keys_per_tx
    return None


def run_engine(
    workload: Workload, keys: Keys, count: int, sync: str, directory: Path
) -> tuple[float, float]:
    """Time ``count`` engine transactions on a fresh file; return (tx/s, seconds)."""
    warmup = _warmup(count)
    db = keyspace.open(f"sqlite:///{directory / 'engine.db'}?sync={sync}")
    try:
        if workload.name == "range1000":
            _engine_load_range(db, keys)
        workload.engine(db, keys, 0, warmup)
        gc.collect()
        started = time.perf_counter()
        workload.engine(db, keys, warmup, count)
        elapsed = time.perf_counter() - started
        expected = _expected_rows(workload, warmup + count)
        if expected is not None and _engine_count(db, keys) != expected:
            raise RuntimeError(f"engine {workload.name}: expected {expected} rows")
        if workload.name == "rmw1" and _engine_counter(db) != warmup + count:
            raise RuntimeError(f"engine rmw1: counter is not {warmup + count}")
    finally:
        db.close()
    return count / elapsed, elapsed


def run_raw(
    workload: Workload, keys: Keys, count: int, sync: str, directory: Path
) -> tuple[float, float]:
    """Time ``count`` raw sqlite3 transactions on a fresh file; return (tx/s, seconds)."""
    warmup = _warmup(count)
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={SYNC_PRAGMA[sync]}")
        conn.execute("CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        if workload.name == "range1000":
            _raw_load_range(conn, keys)
        workload.raw(conn, keys, 0, warmup)
        gc.collect()
        started = time.perf_counter()
        workload.raw(conn, keys, warmup, count)
        elapsed = time.perf_counter() - started
        expected = _expected_rows(workload, warmup + count)
        if expected is not None and _raw_count(conn, keys) != expected:
            raise RuntimeError(f"raw {workload.name}: expected {expected} rows")
        if workload.name == "rmw1" and _raw_counter(conn) != warmup + count:
            raise RuntimeError(f"raw rmw1: counter is not {warmup + count}")
    finally:
        conn.close()
    return count / elapsed, elapsed


def make_keys(workload: Workload, count: int) -> Keys:
    """Pack every key ``count`` timed transactions (plus warm-up) of ``workload`` need."""
    total = (_warmup(count) + count) * workload.keys_per_tx
    distinct = [SUBSPACE.pack((i,)) for i in range(total)]
    begin, end = SUBSPACE.range()
    return Keys(distinct, begin, end)


# -- driver ---------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the embedded sqlite engine against raw sqlite3 (tx/s)."
    )
    parser.add_argument("--sync", choices=sorted(SYNC_PRAGMA), default="normal")
    add_common_arguments(parser, scale="multiply every transaction count")
    args = parser.parse_args(argv)
    check_common(parser, args)
    return args


def _table(rows: list[dict[str, Any]]) -> str:
    columns = [("workload", "---"), ("per transaction", "---"), ("engine tx/s", "--:")]
    columns += [("raw sqlite3 tx/s", "--:"), ("engine/raw", "--:"), ("target", "--:")]
    columns += [("result", "---")]
    return table(
        columns,
        (
            [
                f"`{row['workload']}`",
                row["per_transaction"],
                rate(row["engine_median"]),
                rate(row["raw_median"]),
                f"{row['ratio']:.3f}",
                f">= {row['target']:.2f}",
                row["result"],
            ]
            for row in rows
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    command = command_line("bench_engine", argv)
    counts = {w.name: max(1, round(w.count * args.scale)) for w in WORKLOADS}
    python = platform.python_version()
    print(
        f"python {python}, sqlite {sqlite3.sqlite_version}, sync={args.sync}, "
        f"reps={args.reps}, scale={args.scale:g}, cpus={os.cpu_count()}"
    )
    print("transactions per run: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    keys = {w.name: make_keys(w, counts[w.name]) for w in WORKLOADS}
    per_rep: dict[str, list[dict[str, float]]] = {w.name: [] for w in WORKLOADS}
    started = time.perf_counter()
    for rep in range(args.reps):
        for workload in WORKLOADS:
            result: dict[str, float] = {}
            sides = ("engine", "raw") if rep % 2 == 0 else ("raw", "engine")
            for side in sides:
                with fresh_directory("bench_engine_", args.dir) as directory:
                    run = run_engine if side == "engine" else run_raw
                    tx_per_s, seconds = run(
                        workload, keys[workload.name], counts[workload.name], args.sync, directory
                    )
                result[f"{side}_tx_per_s"] = tx_per_s
                result[f"{side}_seconds"] = seconds
            result["ratio"] = result["engine_tx_per_s"] / result["raw_tx_per_s"]
            per_rep[workload.name].append(result)
            print(
                f"rep {rep + 1}/{args.reps}  {workload.name:<10} "
                f"engine {rate(result['engine_tx_per_s']):>8} tx/s  "
                f"raw {rate(result['raw_tx_per_s']):>8} tx/s  "
                f"ratio {result['ratio']:.2f}",
                flush=True,
            )
    total_seconds = time.perf_counter() - started

    rows: list[dict[str, Any]] = []
    for workload in WORKLOADS:
        reps = per_rep[workload.name]
        engine = statistics.median(r["engine_tx_per_s"] for r in reps)
        raw = statistics.median(r["raw_tx_per_s"] for r in reps)
        ratio = engine / raw
        rows.append(
            {
                "workload": workload.name,
                "per_transaction": workload.per_transaction,
                "transactions": counts[workload.name],
                "warmup_transactions": _warmup(counts[workload.name]),
                "engine_median": engine,
                "raw_median": raw,
                "ratio": ratio,
                "target": workload.target,
                "result": "PASS" if ratio >= workload.target else "BELOW",
                "reps": reps,
            }
        )

    print()
    print(f"engine vs raw sqlite3, sync={args.sync}, median of {args.reps} (tx/s):")
    print()
    print(_table(rows))
    print_footer(command, total_seconds)
    write_json(
        args.json,
        command,
        argv,
        total_seconds,
        {"sync": args.sync, "reps": args.reps, "scale": args.scale, "workloads": rows},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
