"""Starting real ``quick worker`` processes for the acceptance tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker_argv(url: str, app: str, *extra: str) -> list[str]:
    """``python -m quick --db URL worker --app APP`` and ``extra`` options, as argv."""
    return [sys.executable, "-m", "quick", "--db", url, "worker", "--app", app, *extra]


def start_worker(
    url: str, out: Path, app: str, *extra: str, log_level: str = "warning"
) -> subprocess.Popen[bytes]:
    """``python -m quick --db URL worker --app APP ...``, recording jobs to ``out``.

    stderr is a pipe read only when the worker exits, so by default the worker logs
    warnings only: a line per job would fill the pipe and block it.
    """
    env = {**os.environ, "QUICK_TEST_OUT": str(out), "PYTHONPATH": str(ROOT)}
    argv = worker_argv(url, app, "--log-level", log_level, *extra)
    return subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE)


def stop_worker(worker: subprocess.Popen[bytes], timeout: float = 60) -> bytes:
    """SIGTERM (a graceful stop, as in production), then wait for the exit; its stderr."""
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=timeout)
    return err


def kill_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL (a crash), then reap it."""
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=10)


def start_crashable_worker(url: str, out: Path, app: str) -> subprocess.Popen[bytes]:
    """A worker for kill tests: 4 jobs at once, 2-second leases (a killed worker's jobs
    come back fast), 10 seconds' grace on SIGTERM."""
    return start_worker(
        url, out, app, "--concurrency", "4", "--lease-seconds", "2", "--grace", "10"
    )


def record_lines(out: Path) -> list[list[str]]:
    """The records the test apps appended to ``out``, each split into its fields (a last
    line without its newline is still being written by another process: left out)."""
    if not out.exists():
        return []
    return [line.split() for line in out.read_text().split("\n")[:-1]]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)
