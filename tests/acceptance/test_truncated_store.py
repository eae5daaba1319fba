"""A truncated or damaged store file: every command fails fast, exit 3, naming the file.

Each command is a real ``python -m quick`` process with a timeout: a hang fails the
test (``TimeoutExpired``) instead of hanging the suite. The stores are real ones, filled
through quick and closed (so checkpointed into the main file), then cut short.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import keyspace
import quick
from tests.acceptance.processes import ROOT, start_worker, stop_worker

#: Far below SQLite's 30-second busy timeout, which a hang used to wait out per retry.
TIMEOUT = 20


def _quick(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quick", "--db", url, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 300 jobs over 30 queues, closed (its log checkpointed into the file)."""
    path = tmp_path_factory.mktemp("store") / "real.db"
    with keyspace.open(f"sqlite:///{path}") as db:
        for i in range(300):
            quick.enqueue(db, f"q{i % 30}", "record", {"n": i, "pad": "x" * 300})
    assert not Path(f"{path}-wal").exists()
    return path


def _assert_refused(done: subprocess.CompletedProcess[str], store: Path) -> None:
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    assert str(store) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("cut", ["50", "100", "4096", "half", "-4096", "-100"])
@pytest.mark.parametrize("command", [["queues"], ["enqueue", "q1", "record"]])
def test_truncated_store_fails_fast_naming_the_file(
    real_store: Path, tmp_path: Path, cut: str, command: list[str]
) -> None:
    size = real_store.stat().st_size
    offset = size // 2 if cut == "half" else (size + int(cut) if cut.startswith("-") else int(cut))
    store = tmp_path / "cut.db"
    shutil.copy(real_store, store)
    os.truncate(store, offset)
    _assert_refused(_quick(f"sqlite:///{store}", *command), store)
    assert store.stat().st_size == offset  # nothing written to the damaged file


#: Keeps a store open, as any worker does, until killed.
_HOLDER = (
    "import sys, time, keyspace\n"
    "db = keyspace.open(sys.argv[1])\n"
    "db.transact(lambda tr: tr.get(b'k'))\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def test_store_truncated_while_another_process_holds_it_fails_fast(
    real_store: Path, tmp_path: Path
) -> None:
    """The file emptied under a process that has it open: opening it used to wait on
    SQLite's lock (to put an empty file in WAL mode) for 30 s per try."""
    store = tmp_path / "held.db"
    shutil.copy(real_store, store)
    url = f"sqlite:///{store}"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        os.truncate(store, 0)
        for command in (["queues"], ["enqueue", "q1", "record"]):
            _assert_refused(_quick(url, *command), store)
    finally:
        holder.kill()
        holder.communicate(timeout=10)


def test_store_damaged_under_an_idle_worker_exits_3_naming_the_file(
    real_store: Path, tmp_path: Path
) -> None:
    """Pages overwritten, the header intact: the worker's claim round meets the damage
    in a nursery child, which used to end the worker with a traceback (exit 1)."""
    store = tmp_path / "damaged.db"
    shutil.copy(real_store, store)
    with store.open("r+b") as file:
        file.seek(4096 * 6)
        file.write(os.urandom(4096 * 40))
    worker = start_worker(
        f"sqlite:///{store}", tmp_path / "out.txt", "tests.acceptance.jobs_app:app"
    )
    try:
        _, err = worker.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_worker(worker)
        raise
    text = err.decode()
    assert worker.returncode == 3, text
    assert str(store) in text
    assert "Traceback" not in text
