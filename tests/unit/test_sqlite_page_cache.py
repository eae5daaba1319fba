"""The sqlite engine's page cache per connection is bounded: a worker process holds about
ten connections, and on a store larger than their caches each one fills up."""

from __future__ import annotations

import threading
from pathlib import Path

import quick
from keyspace import sqlite_pool


def test_sqlite_connections_cache_at_most_cache_kib_each(tmp_path: Path) -> None:
    seen: list[int] = []
    with quick.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
        quick.enqueue(db, "q", "t", 0)
        barrier = threading.Barrier(4)

        def read() -> None:
            def body(tr: object) -> None:
                barrier.wait()  # four transactions open at once: four connections
                conn = tr.snapshot_conn()  # type: ignore[attr-defined]
                seen.append(conn.execute("PRAGMA cache_size").fetchone()[0])

            db.transact(body)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert seen == [-sqlite_pool.CACHE_KIB] * 4
    assert sqlite_pool.CACHE_KIB * 10 <= 40_000  # ten connections: at most ~40 MB of cache
