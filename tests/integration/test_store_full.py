"""A full disk is reported as what it is: StoreFull, naming the file, the store intact.

One test fills a real filesystem (a 1 MiB tmpfs mounted in a private mount namespace,
skipped where the kernel allows none); the other stops SQLite at ``max_page_count``,
which it reports exactly as it reports ENOSPC (SQLITE_FULL), and runs everywhere.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import quick
from keyspace.errors import StorageError, StoreFull
from keyspace.sqlite_engine import SqliteDatabase

ROOT = Path(__file__).resolve().parents[2]


def _count(db: SqliteDatabase) -> int:
    return sum(queue["counts"]["ready"] for queue in quick.list_queues(db))


def test_sqlite_store_past_its_size_limit_raises_store_full(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with SqliteDatabase(str(path)) as db:
        quick.enqueue(db, "q", "t", {"n": 0})
        conn = db.pool.acquire()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + 2}")  # on the one pooled connection
        db.pool.release(conn)
        enqueued = 1
        try:
            for n in range(1, 500):
                quick.enqueue(db, "q", "t", {"n": n, "pad": "x" * 2000})
                enqueued += 1
        except StorageError as failed:
            error = failed
        assert isinstance(error, StoreFull)
        assert (error.code, error.retryable, error.maybe_committed) == (1510, False, False)
        assert f"the disk holding the sqlite store {path} is full" in str(error)
        assert "backup" not in str(error)
        assert pickle.loads(pickle.dumps(error)).detail == error.detail
        conn = db.pool.acquire()
        conn.execute("PRAGMA max_page_count=1073741823")  # space freed
        db.pool.release(conn)
        quick.enqueue(db, "q", "t", {"n": "after"})
        assert _count(db) == enqueued + 1  # nothing lost, writing resumed


# Runs inside the mount namespace, with the tmpfs at argv[1]: fills the disk, then
# reports what the library and the CLI said, and whether writing resumed once freed.
_FILL = textwrap.dedent(
    """
    import json, os, subprocess, sys
    import keyspace, quick
    directory = sys.argv[1]
    url = f"sqlite:///{directory}/q.db"
    report = {}
    with keyspace.open(url) as db:
        quick.enqueue(db, "q", "t", {"n": 0})
        with open(f"{directory}/filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\\0" * 4096)
            except OSError:
                pass
        enqueued = 1
        try:
            for n in range(1, 5000):
                quick.enqueue(db, "q", "t", {"n": n, "pad": "x" * 1000})
                enqueued += 1
        except keyspace.StorageError as error:
            report["error"] = [type(error).__name__, error.code, str(error)]
        for _ in range(50):  # one may still fit where a checkpoint let the log restart
            cli = subprocess.run(
                [sys.executable, "-m", "quick", "--db", url, "enqueue", "q", "t"],
                capture_output=True, text=True, timeout=60,
            )
            if cli.returncode != 0:
                break
            enqueued += 1
        report["cli"] = [cli.returncode, cli.stderr]
        os.unlink(f"{directory}/filler")
        quick.enqueue(db, "q", "t", {"n": "after"})
        report["enqueued"] = enqueued + 1
        report["stored"] = sum(q["counts"]["ready"] for q in quick.list_queues(db))
    print(json.dumps(report))
    """
)


def _namespaced_tmpfs(directory: Path) -> list[str] | None:
    """argv prefix running a command with a 1 MiB tmpfs on ``directory``; None if impossible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    mount = f"mount -t tmpfs -o size=1m tmpfs {directory}"
    argv = [unshare, "-rm", "sh", "-c", f'{mount} && exec "$@"', "sh"]
    try:
        probe = subprocess.run([*argv, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return argv if probe.returncode == 0 else None


def test_sqlite_store_on_a_full_filesystem_raises_store_full(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = _namespaced_tmpfs(disk)
    if prefix is None:
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (unshare -rm)")
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _FILL, str(disk)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    store = f"{disk}/q.db"
    kind, code, message = report["error"]
    assert (kind, code) == ("StoreFull", 1510)
    assert f"the disk holding the sqlite store {store} is full" in message
    returncode, stderr = report["cli"]
    assert returncode == 3, stderr
    assert "is full" in stderr
    assert store in stderr
    assert "Traceback" not in stderr
    assert "backup" not in stderr
    assert report["stored"] == report["enqueued"]
