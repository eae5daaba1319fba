"""``quick worker --processes P``: start P consumer processes and pass signals on to them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

__all__ = ["supervise"]


def supervise(argvs: list[list[str]]) -> int:
    """Run ``quick <argv>`` once per argv, at once; forward SIGINT/SIGTERM; return the worst
    exit code. (Children differ only where they must, e.g. each its own metrics port.)"""
    children = [subprocess.Popen([sys.executable, "-m", "quick", *argv]) for argv in argvs]

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while any(child.poll() is None for child in children):
        time.sleep(0.1)
    return max((child.returncode or 0) for child in children)
