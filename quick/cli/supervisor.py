"""``quick worker --processes P``: run P consumer processes, restart those that die, and
pass SIGINT/SIGTERM on to them.

Theory of operation: the supervisor polls its children every :data:`POLL_SECONDS`. A
child that ends while the supervisor is not stopping died (a crash, ``kill -9``, the
OOM killer): the death is logged with its exit status or signal, and the child is
started again after a backoff (:func:`restart_wait`), unless it exited with status 2,
a usage mistake that a restart would only repeat. A signal to the supervisor is
forwarded to every live child (a second signal too, which children take as "stop
now", exiting 128 + its number with their jobs left leased), and no child is restarted
after it. The supervisor then waits for every child and exits 0, or non-zero when a
child ended abnormally and was not restarted; after a second signal it exits 128 + that
signal's number, as its children do.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

__all__ = ["FIRST_WAIT", "HEALTHY_AFTER", "MAX_WAIT", "describe_exit", "restart_wait", "supervise"]

#: Seconds before the first restart of a child: long enough not to spin on a crash loop.
FIRST_WAIT = 0.5
#: The longest wait between restarts (the wait doubles on each quick death up to this).
MAX_WAIT = 30.0
#: A child that lived this many seconds was healthy: its next restart waits FIRST_WAIT again.
HEALTHY_AFTER = 60.0
#: How often children are polled (also how soon a signal is forwarded).
POLL_SECONDS = 0.1
#: A child's exit status meaning "a usage mistake": restarting would repeat it.
USAGE_MISTAKE = 2

log = logging.getLogger("quick.supervisor")


def restart_wait(previous: float | None, lived: float) -> float:
    """Seconds to wait before restarting a child that died after ``lived`` seconds, when the
    wait before its last restart was ``previous`` (None: it was never restarted)."""
    if previous is None or lived >= HEALTHY_AFTER:
        return FIRST_WAIT
    return min(previous * 2, MAX_WAIT)


def describe_exit(returncode: int) -> str:
    """``exit status N`` or ``killed by SIGKILL`` (Popen reports a signal as ``-signum``)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _exit_code(returncode: int) -> int:
    """A child's ending as a shell would report it: a signal as 128 + signum."""
    return returncode if returncode >= 0 else 128 - returncode


@dataclass(slots=True)
class _Child:
    index: int
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    forwarded: int = 0
    wait: float | None = None
    restart_at: float | None = None
    last_code: int = 0
    abnormal: int | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "quick", *self.argv])
        self.started = time.monotonic()
        self.forwarded = 0
        self.restart_at = None


def supervise(argvs: list[list[str]]) -> int:
    """Run ``quick <argv>`` once per argv, restarting any that dies, until SIGINT/SIGTERM;
    return 0, or the exit code of a child that ended abnormally and was not restarted."""
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children = [_Child(index, argv) for index, argv in enumerate(argvs)]
    for child in children:
        child.start()
    while True:
        for child in children:
            _tend(child, received)
        if all(child.process is None and child.restart_at is None for child in children):
            break
        time.sleep(POLL_SECONDS)
    codes = [child.abnormal for child in children if child.abnormal is not None]
    if len(received) > 1:
        return _exit_code(-received[1])  # stopped now, as asked: jobs were left leased
    return max(codes, default=0)


def _tend(child: _Child, received: list[int]) -> None:
    """Forward signals to ``child``, notice its end, and restart it when due."""
    now = time.monotonic()
    process = child.process
    if process is not None:
        while child.forwarded < len(received) and process.poll() is None:
            process.send_signal(received[child.forwarded])
            child.forwarded += 1
        if process.poll() is None:
            return
        child.process = None
        _ended(child, process, now, received)
    if child.restart_at is None:
        return
    if received:
        child.restart_at = None
        child.abnormal = _exit_code(child.last_code)
        log.warning("worker process %d not restarted: stopping", child.index)
    elif now >= child.restart_at:
        child.start()
        pid = child.process.pid if child.process else None
        log.warning("worker process %d restarted", child.index, extra={"pid": pid})


def _ended(
    child: _Child, process: subprocess.Popen[bytes], now: float, received: list[int]
) -> None:
    """Record how ``child`` ended; schedule its restart if it died unasked."""
    code = process.returncode
    how = describe_exit(code)
    fields = {"pid": process.pid, "ending": how}
    if received:
        # Ended by the very signal passed on (a child still starting up has Python's
        # default handler and no jobs yet): that is the stop asked for, not a failure.
        stopped_now = len(received) > 1 and code - 128 in received
        if code != 0 and -code not in received and not stopped_now:
            child.abnormal = _exit_code(code)
            log.warning(
                "worker process %d ended abnormally while stopping", child.index, extra=fields
            )
        return
    child.last_code = code
    if code == USAGE_MISTAKE:
        child.abnormal = code
        log.error(
            "worker process %d died (usage mistake); not restarting it", child.index, extra=fields
        )
        return
    child.wait = restart_wait(child.wait, now - child.started)
    child.restart_at = now + child.wait
    log.warning(
        "worker process %d died; restarting it in %.1f s",
        child.index,
        child.wait,
        extra={**fields, "lived": round(now - child.started, 3)},
    )
