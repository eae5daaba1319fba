"""A watch on the embedded engine re-reads its key with one statement, in no transaction.

Every commit to the store wakes every watch of every process sharing it (the kernel
reports writes to the file, not to a key), so an idle worker re-reads its watched keys
several times per job another process commits. Each re-read is one ``SELECT``: no
``BEGIN``, no read version, no ``ROLLBACK``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import keyspace
from keyspace.sqlite_engine import SqliteDatabase


def test_a_watch_rereads_its_key_in_one_statement(tmp_path: Path) -> None:
    db = keyspace.open(f"sqlite:///{tmp_path / 'q.db'}")
    assert isinstance(db, SqliteDatabase)
    db.transact(lambda tr: tr.set(b"watched", b"same"))
    watch = db.transact(lambda tr: tr.watch(b"watched"))
    statements: list[str] = []
    connect = db.pool.connect

    def traced() -> sqlite3.Connection:
        conn = connect()
        conn.set_trace_callback(statements.append)
        return conn

    db.pool.connect = traced  # type: ignore[method-assign]
    with db.pool.pool_lock:  # pooled connections are reopened, traced
        idle, db.pool.idle = db.pool.idle, []
    for conn in idle:
        conn.close()
    db.transact(lambda tr: tr.set(b"other", b"unrelated"))  # wakes the watch
    statements.clear()
    assert watch.wait(timeout=0.1) is False  # re-read at least once, found no change
    assert statements, "the watch never re-read its key"
    assert all(s.startswith("SELECT v FROM kv WHERE k = ") for s in statements), statements
    db.transact(lambda tr: tr.set(b"watched", b"changed"))
    assert watch.wait(timeout=5.0) is True
    db.close()
