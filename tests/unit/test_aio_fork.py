"""The async pool in a forked child: the parent's worker threads do not exist there, so
the child must start its own (a pool that thought it had a worker would hang)."""

from __future__ import annotations

import subprocess
import sys

FORK_SCRIPT = """
import asyncio, os, signal
from quick.aio_waiting import run_blocking

assert asyncio.run(run_blocking(lambda: 1)) == 1  # the parent's pool has a worker now
pid = os.fork()
if pid == 0:
    signal.alarm(30)  # a hung child must not outlive the test
    os._exit(0 if asyncio.run(run_blocking(lambda: 7)) == 7 else 1)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""


def test_aio_pool_works_in_a_forked_child() -> None:
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT], timeout=60, check=False)
    assert done.returncode == 0
