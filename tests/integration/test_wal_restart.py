"""The sqlite store's write-ahead log stops growing while readers never all pause: two
threads that always hold a read snapshot between them (as two workers draining a
million tenants do) kept the log from ever starting over, and it grew without bound."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import quick
from keyspace import checkpoints
from keyspace.protocol import Transaction

#: Bytes of values to commit: several times the log size the test allows.
TO_WRITE = 32_000_000


def _overlapping_readers(path: Path, stop: threading.Event) -> list[threading.Thread]:
    """Two threads, each holding a read snapshot for 50 ms at a time, staggered so that
    one is always open."""

    def read(offset: float) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        time.sleep(offset)
        while not stop.is_set():
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM kv").fetchone()
                time.sleep(0.05)
                conn.execute("COMMIT")
            except sqlite3.OperationalError:  # busy as the log starts over: read again
                conn.rollback()
        conn.close()

    return [threading.Thread(target=read, args=(offset,)) for offset in (0.0, 0.025)]


def test_wal_stops_growing_under_readers_that_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "RESTART_FRAMES", 200)  # about 0.8 MB
    path = tmp_path / "q.db"
    stop = threading.Event()
    value = os.urandom(2000)
    with quick.open(f"sqlite:///{path}") as db:
        db.transact(lambda tr: tr.set(b"warm", b""))
        readers = _overlapping_readers(path, stop)
        for reader in readers:
            reader.start()
        try:
            written = 0
            sizes: list[int] = []  # the log file's size after each commit
            while written * 20 * len(value) < TO_WRITE:

                def body(tr: Transaction, n: int = written) -> None:
                    for i in range(20):
                        tr.set(b"k%d" % ((n * 20 + i) % 20_000), value)

                db.transact(body)
                written += 1
                # A drain's commits come a few ms apart; back to back, an idle machine
                # writes all of TO_WRITE within a few checkpoint rounds.
                time.sleep(0.002)
                sizes.append(Path(f"{path}-wal").stat().st_size)
        finally:
            stop.set()
            for reader in readers:
                reader.join()
    # Each commit logs its pages and its conflict ranges: without the RESTART checkpoint
    # the log grew to about 2.7 times TO_WRITE, never starting over. With it the log
    # starts over again and again (each time a RESTART checkpoint
    # completes, its frames are written from the start of the file again), so the file
    # never reaches that size.
    assert max(sizes) < TO_WRITE, max(sizes)
