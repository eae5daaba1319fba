"""Starting real ``quick worker`` processes for the acceptance tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_worker(url: str, out: Path, app: str, *extra: str) -> subprocess.Popen[bytes]:
    """``python -m quick --db URL worker --app APP ...``, recording jobs to ``out``."""
    env = {**os.environ, "QUICK_TEST_OUT": str(out), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "quick", "--db", url, "worker", "--app", app, *extra],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
