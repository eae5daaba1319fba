"""The no-op job ``scripts/bench.py`` runs: ``quick worker --app bench_jobs:app``.

The handler appends one line, ``<i> <t_enqueue> <t_start> <pid>``, to the file named by
``$QUICK_BENCH_RECORD`` with a single ``write()`` on an ``O_APPEND`` descriptor (lines are far
below ``PIPE_BUF``, so concurrent writers never interleave). ``i`` and ``t_enqueue`` come from
the payload ``{"i": int, "t": time.time() at enqueue}``. The driver counts finished jobs and
takes every timing from that file, as the peer harness does.
"""

from __future__ import annotations

import os
import time
from typing import Any

import quick

__all__ = ["RECORD_ENV", "TOPIC", "app", "append_record"]

RECORD_ENV = "QUICK_BENCH_RECORD"
TOPIC = "bench:noop"

app = quick.App()
_out: tuple[int, int] | None = None  # (pid, fd): reopened in a forked child


def append_record(line: bytes) -> None:
    """Append ``line`` to the record file in one ``write()`` (opened once per process)."""
    global _out
    pid = os.getpid()
    if _out is None or _out[0] != pid:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        _out = (pid, os.open(os.environ[RECORD_ENV], flags, 0o644))
    os.write(_out[1], line)


@app.job(TOPIC)
def noop(payload: Any, meta: quick.Meta) -> None:
    started = time.time()
    append_record(b"%d %.6f %.6f %d\n" % (payload["i"], payload["t"], started, os.getpid()))
