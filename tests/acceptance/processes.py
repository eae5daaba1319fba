"""Starting real ``quick worker`` processes for the acceptance tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_worker(
    url: str, out: Path, app: str, *extra: str, log_level: str = "warning"
) -> subprocess.Popen[bytes]:
    """``python -m quick --db URL worker --app APP ...``, recording jobs to ``out``.

    stderr is a pipe read only when the worker exits, so by default the worker logs
    warnings only: a line per job would fill the pipe and block it.
    """
    env = {**os.environ, "QUICK_TEST_OUT": str(out), "PYTHONPATH": str(ROOT)}
    argv = ["--db", url, "worker", "--app", app, "--log-level", log_level, *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "quick", *argv], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
