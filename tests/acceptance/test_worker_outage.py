"""A real ``quick worker`` rides out a store that stops answering, and a second signal stops it now.

The worker opens the store through a URL with an injected outage (``?outage=``: an
unreachable cluster, 1031 once the 3-second transaction timeout passes) or full disk
(``?disk_full=``); the test enqueues through the same file without them, before and
during the fault, and the worker must drain every job afterwards without exiting.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import quick
from tests.acceptance.processes import ROOT, record_lines, wait_until, worker_argv

pytestmark = pytest.mark.slow

APP = "tests.acceptance.jobs_app:app"
#: Longer than the 3-second transaction timeout, so reads really end with 1031.
FAULTS = {
    "outage": ("outage=2+8&timeout=3000", "transaction_timed_out (1031)"),
    "disk_full": ("disk_full=2+6", "io_error (1510)"),
}


def _start(url: str, out: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "QUICK_TEST_OUT": str(out), "PYTHONPATH": str(ROOT)}
    argv = worker_argv(url, APP, "--log-level", "warning", *extra)
    with log.open("wb") as stderr:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stderr=stderr)


def _enqueue(url: str, numbers: range, sleep: float = 0.0) -> None:
    with quick.open(url) as db:
        quick.enqueue_many(
            db,
            [
                {"queue_id": f"q{n % 4}", "topic": "record", "payload": {"n": n, "sleep": sleep}}
                for n in numbers
            ],
        )


def _done(out: Path) -> set[int]:
    return {int(fields[0]) for fields in record_lines(out)}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_worker_rides_out_the_store_not_answering(tmp_path: Path, fault: str) -> None:
    query, error_name = FAULTS[fault]
    store = f"sqlite:///{tmp_path / 'q.db'}"
    out, log = tmp_path / "out.txt", tmp_path / "worker.log"
    _enqueue(store, range(40), sleep=0.1)
    # 3-second leases: the keeper's renewals (every second) meet the fault too.
    worker = _start(f"{store}?{query}", out, log, "--concurrency", "4", "--lease-seconds", "3")
    try:
        wait_until(lambda: bool(_done(out)), 30, "the worker to start jobs")
        time.sleep(2.5)  # the fault starts 2 s after the worker opened the store
        _enqueue(store, range(40, 80))  # during the fault
        wait_until(lambda: "store unavailable" in log.read_text(), 30, "the outage to be logged")
        assert error_name in log.read_text()
        wait_until(lambda: _done(out) >= set(range(80)), 60, "every job to run")
        wait_until(lambda: "available again" in log.read_text(), 10, "the recovery to be logged")
        assert worker.poll() is None, log.read_text()
        with quick.open(store) as db:
            counts = [quick.queue_counts(db, f"q{i}") for i in range(4)]
        assert sum(c["ready"] + c["scheduled"] + c["leased"] for c in counts) == 0
        text = log.read_text()
        assert text.count("store unavailable") == 1, "logged once per outage, not per retry"
        assert "Traceback" not in text
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert worker.returncode == 0, log.read_text()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_worker_second_sigterm_stops_now_leaving_the_job_leased(
    tmp_path: Path, processes: str
) -> None:
    store = f"sqlite:///{tmp_path / 'q.db'}"
    out, log = tmp_path / "out.txt", tmp_path / "worker.log"
    _enqueue(store, range(1), sleep=60)
    worker = _start(store, out, log, "--grace", "60", "--processes", processes)
    try:
        wait_until(lambda: _done(out) == {0}, 30, "the long job to start")
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert worker.poll() is None, "the first signal waits for the running job"
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 128 + signal.SIGTERM, log.read_text()
    assert "leases expire" in log.read_text()
    with quick.open(store) as db:
        assert quick.queue_counts(db, "q0")["leased"] == 1


def _enqueue_cli(url: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "quick", "--db", url, "enqueue", "q0", "record"]
    argv += ["--payload", '{"n": 999}']
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_enqueue_on_a_full_disk_says_so_and_exits_3(tmp_path: Path) -> None:
    done = _enqueue_cli(f"sqlite:///{tmp_path / 'q.db'}?disk_full=0+600")
    assert done.returncode == 3, done.stderr
    assert "full" in done.stderr
    assert "Traceback" not in done.stderr
    assert "backup" not in done.stderr, "a full disk is not a damaged store"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MB filesystem (tmpfs), when this process may mount one. Not smaller: the
    jobs' records rewritten after the space returns grow the store's WAL by megabytes, and
    on an 8 MB disk that filled it again, stalling the worker's recording until its stop."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("a real full disk needs permission to mount a tmpfs (root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write to ``path`` until the filesystem has no space left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def test_worker_rides_out_a_real_full_disk(tmp_path: Path, small_disk: Path) -> None:
    store = f"sqlite:///{small_disk / 'q.db'}"
    out, log = tmp_path / "out.txt", tmp_path / "worker.log"
    _enqueue(store, range(1))
    worker = _start(store, out, log, "--concurrency", "4")
    try:
        wait_until(lambda: _done(out) == {0}, 30, "the worker to start")
        with quick.open(store) as db:  # jobs that become due once the disk is full
            big = "x" * 50_000  # each claim rewrites them: the log must grow
            quick.enqueue_many(
                db,
                [
                    {"queue_id": "q1", "topic": "record", "payload": {"n": n, "pad": big}}
                    | {"delay": 1.5}
                    for n in range(1, 41)
                ],
            )
        filler = small_disk / "filler"
        _fill(filler)
        wait_until(lambda: "store unavailable" in log.read_text(), 30, "the full disk logged")
        assert "full" in log.read_text()
        refused = _enqueue_cli(store)
        assert refused.returncode == 3, refused.stderr
        assert "full" in refused.stderr, refused.stderr
        filler.unlink()
        wait_until(lambda: _done(out) >= set(range(41)), 60, "every job to run")
        assert worker.poll() is None, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert worker.returncode == 0, log.read_text()
