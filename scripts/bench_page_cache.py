"""What the sqlite engine's page caches cost a process on a big store: ten threads each
read the records of 30,000 random queues of a store ``bench_tenants.py --fill-only``
wrote, through quick's own connections, and the process's anonymous memory is reported::

    .venv/bin/python scripts/bench_page_cache.py /tmp/big.db [--cache-kib 16000]

``--cache-kib`` overrides ``keyspace.sqlite_pool.CACHE_KIB`` (each connection's cache).
"""

from __future__ import annotations

import argparse
import os
import random
import threading
from pathlib import Path

import quick
from keyspace import sqlite_pool
from keyspace.layout import queue_keys
from keyspace.protocol import Transaction

THREADS = 10
READS = 30_000


def _status_mb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--queues", type=int, default=1_000_000, help="tenant-NNNNNNN queues")
    parser.add_argument("--cache-kib", type=int, default=sqlite_pool.CACHE_KIB)
    args = parser.parse_args()
    sqlite_pool.CACHE_KIB = args.cache_kib
    barrier = threading.Barrier(THREADS)
    with quick.open(f"sqlite:///{args.path}") as db:
        before = _status_mb("RssAnon")

        def reader() -> None:
            rnd = random.Random()
            barrier.wait()
            for _ in range(READS):
                space = queue_keys(f"tenant-{rnd.randrange(args.queues):07d}").space

                def body(tr: Transaction, space: object = space) -> object:
                    return tr.snapshot.get_range(*space.range(), limit=5)  # type: ignore[attr-defined]

                db.transact(body)

        threads = [threading.Thread(target=reader) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(  # while the connections (and their caches) are still open
            f"cache {args.cache_kib:,} KiB per connection, {THREADS} threads x {READS:,} "
            f"reads: RssAnon {before} -> {_status_mb('RssAnon')} MB, "
            f"VmHWM {_status_mb('VmHWM')} MB, load {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
