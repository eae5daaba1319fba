"""The sqlite engine's files: damaged stores fail fast and clearly, new files are private.

Damage is real (a truncated or overwritten file) and each attempt runs in a
subprocess with a timeout, so a regression shows as a failed test, not a hung suite.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import keyspace
from keyspace import EngineUnavailable
from keyspace.protocol import Transaction

ROOT = Path(__file__).resolve().parents[2]

# Opens the store, enqueues (a write after a read) and reads everything, then reports the
# outcome on stdout as "<ErrorClass> <code or -> <message>" or "ok".
_ATTEMPT = textwrap.dedent(
    """
    import sys
    import keyspace, quick
    try:
        with keyspace.open(sys.argv[1]) as db:
            quick.enqueue(db, "q", "topic", {"n": 1})
            db.transact(lambda tr: tr.get_range(b"", b"\\xff"))
    except keyspace.QuickError as error:
        print(type(error).__name__, getattr(error, "code", "-"), error)
    else:
        print("ok")
    """
)


def _attempt(url: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _ATTEMPT, url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _filled_store(path: Path) -> None:
    """A store of several hundred pages, checkpointed into the main file and closed."""

    def fill(tr: Transaction, start: int) -> None:
        for i in range(start, start + 500):
            tr.set(b"k%06d" % i, os.urandom(200))

    with keyspace.open(f"sqlite:///{path}") as db:
        for start in range(0, 3000, 500):
            db.transact(fill, start)
    assert not Path(f"{path}-wal").exists()  # the last close checkpointed the log


def test_sqlite_truncated_store_fails_at_open_naming_the_file(tmp_path: Path) -> None:
    store = tmp_path / "q.db"
    _filled_store(store)
    with store.open("r+b") as file:
        file.truncate(store.stat().st_size // 2)
    outcome = _attempt(f"sqlite:///{store}", tmp_path)
    assert outcome.startswith("EngineUnavailable -"), outcome
    assert f"{store}: it is truncated" in outcome


def test_sqlite_store_damaged_inside_fails_fast_and_not_retryable(tmp_path: Path) -> None:
    store = tmp_path / "q.db"
    _filled_store(store)
    middle = store.stat().st_size // 2 // 4096 * 4096
    with store.open("r+b") as file:
        file.seek(middle)
        file.write(b"\xa5" * 4096 * 8)  # eight pages of the job table, the header intact
    outcome = _attempt(f"sqlite:///{store}", tmp_path)
    assert outcome.startswith("StorageError 4100"), outcome
    assert f"{store} cannot be used: database disk image is malformed" in outcome


def test_sqlite_garbage_store_fails_fast_naming_the_file_and_leaves_no_lock(
    tmp_path: Path,
) -> None:
    store = tmp_path / "q.db"
    store.write_bytes(os.urandom(64 * 1024))
    outcome = _attempt(f"sqlite:///{store}", tmp_path)
    assert outcome.startswith("EngineUnavailable -"), outcome
    assert str(store) in outcome
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.db"]


@pytest.mark.parametrize("where", ["a directory", "a missing directory"])
def test_sqlite_open_of_an_impossible_path_names_the_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = "stores" if where == "a directory" else "missing/q.db"
    (tmp_path / "stores").mkdir()
    with pytest.raises(EngineUnavailable) as caught:
        keyspace.open(f"sqlite:///{relative}")
    assert str(tmp_path / relative) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stores"]
    assert list((tmp_path / "stores").iterdir()) == []


def test_sqlite_new_store_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with keyspace.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
            db.transact(lambda tr: tr.set(b"k", b"secret payload"))
            names = sorted(p.name for p in tmp_path.iterdir())
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert names == ["q.db", "q.db-shm", "q.db-wal", "q.db.lock"]
    assert modes == dict.fromkeys(names, 0o600)


def test_sqlite_open_and_read_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    """A writer paused mid-commit (SIGSTOP) keeps the writer lock; opening the store and
    reading it from another process must not wait for it."""
    path = tmp_path / "q.db"
    with keyspace.open(f"sqlite:///{path}") as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            f"{path}.lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        read = (
            "import sys, keyspace\n"
            "with keyspace.open(sys.argv[1]) as db:\n"
            "    print(db.transact(lambda tr: tr.get(b'k')).decode())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", read, f"sqlite:///{path}"],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
        assert result.stdout.strip() == "v", result.stderr
    finally:
        holder.kill()
        holder.communicate()


def test_sqlite_store_created_by_another_process_meanwhile_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process creates the file between this one's look and its create: this one
    # opens the store instead of failing with "File exists".
    path = tmp_path / "new.db"
    real_exists = os.path.exists

    def looked_before_the_other_created_it(name: object) -> bool:
        if str(name) == str(path):
            path.touch()
            return False
        return real_exists(name)  # type: ignore[arg-type]

    monkeypatch.setattr(os.path, "exists", looked_before_the_other_created_it)
    with keyspace.open(f"sqlite:///{path}") as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))
    monkeypatch.undo()
    with keyspace.open(f"sqlite:///{path}") as db:
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"
