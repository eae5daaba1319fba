"""Conformance: the transaction protocol behaves as FoundationDB's on every engine:
watches, in this process and across processes.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from keyspace.protocol import Database
from keyspace.subspace import Subspace

ROOT = Path(__file__).resolve().parents[2]


# -- watches -------------------------------------------------------------------------


def _watch(db: Database, key: bytes) -> Any:
    return db.transact(lambda tr: tr.watch(key))


def test_protocol_watch_fires_when_another_transaction_changes_the_key(
    db: Database, space: Subspace
) -> None:
    key = space.pack(("watched",))
    db.transact(lambda tr: tr.set(key, b"before"))
    watch = _watch(db, key)
    timer = threading.Timer(0.05, lambda: db.transact(lambda tr: tr.set(key, b"after")))
    timer.start()
    started = time.monotonic()
    assert watch.wait(timeout=5.0) is True
    assert time.monotonic() - started < 2.0
    timer.join()


def test_protocol_watch_times_out_while_the_value_stays(db: Database, space: Subspace) -> None:
    key = space.pack(("quiet",))
    other = space.pack(("noisy",))
    db.transact(lambda tr: tr.set(key, b"same"))
    watch = _watch(db, key)
    db.transact(lambda tr: tr.set(other, b"unrelated"))
    db.transact(lambda tr: tr.set(key, b"same"))
    assert watch.wait(timeout=0.2) is False


def test_protocol_watch_of_a_missing_key_fires_when_it_appears(
    db: Database, space: Subspace
) -> None:
    key = space.pack(("later",))
    watch = _watch(db, key)
    db.transact(lambda tr: tr.add(key, struct.pack("<q", 1)))
    assert watch.wait(timeout=5.0) is True


def test_protocol_watch_cancel_releases_a_blocked_waiter(db: Database, space: Subspace) -> None:
    watch = _watch(db, space.pack(("never",)))
    threading.Timer(0.05, watch.cancel).start()
    started = time.monotonic()
    assert watch.wait(timeout=10.0) is False
    assert time.monotonic() - started < 5.0


def test_protocol_watch_sees_a_change_committed_by_another_process(
    url: str, db: Database, space: Subspace
) -> None:
    key = space.pack(("cross",))
    watch = _watch(db, key)
    code = (
        "import sys, keyspace\n"
        "db = keyspace.open(sys.argv[1])\n"
        "db.transact(lambda tr: tr.set(bytes.fromhex(sys.argv[2]), b'x'))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, url, key.hex()], cwd=ROOT)
    try:
        assert watch.wait(timeout=10.0) is True
    finally:
        assert writer.wait(timeout=30) == 0
