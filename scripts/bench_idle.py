"""What idle workers cost: CPU seconds per second of ``quick worker --processes N`` on an
empty store, from ``/proc``, with and without simulated FoundationDB latency.

Each count starts ``quick worker --app bench_jobs:app --processes N`` on a fresh SQLite
file (``?latency=grv:1,read:0.5,commit:5`` on the workers' URL with ``--latency``),
waits ``--warmup`` seconds for every process to start and settle, then reads each
consumer process's user + system CPU from ``/proc/<pid>/stat`` before and after a
``--window`` of seconds with no job enqueued. Reported per count: the consumers' total
and per process (mean, min, max) in CPU seconds per second, and the supervisor's.
CPU time is counted in clock ticks (10 ms on most kernels): over a 10 s window a figure
is good to about 0.001. Linux only.

    .venv/bin/python scripts/bench_idle.py                         # 1, 4, 16; both URLs
    .venv/bin/python scripts/bench_idle.py --counts 16 --latency
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import PROJECT_ROOT, SCRIPTS, code_version

import quick

FDB_LATENCY = "grv:1,read:0.5,commit:5"
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def measure(processes: int, latency: bool, warmup: float, window: float) -> dict[str, object]:
    """One count: the consumers' idle CPU seconds per second."""
    temp = Path(tempfile.mkdtemp(prefix="quick-idle-"))
    url = f"sqlite:///{temp / 'idle.db'}"
    quick.open(url).close()
    worker_url = f"{url}?latency={FDB_LATENCY}" if latency else url
    path = os.pathsep.join([str(SCRIPTS), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "QUICK_BENCH_RECORD": str(temp / "records.txt")}
    argv = [sys.executable, "-m", "quick", "--db", worker_url, "worker"]
    argv += ["--app", "bench_jobs:app", "--log-level", "warning", "--processes", str(processes)]
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, start_new_session=True)
    try:
        time.sleep(warmup)
        pids = _children(proc.pid) if processes > 1 else [proc.pid]
        if len(pids) != processes:
            raise SystemExit(f"{len(pids)} consumer processes found, {processes} expected")
        before = {pid: _cpu(pid) for pid in pids}
        supervisor = _cpu(proc.pid)
        started = time.monotonic()
        time.sleep(window)
        seconds = time.monotonic() - started
        each = sorted((_cpu(pid) - before[pid]) / seconds for pid in pids)
        supervisor = (_cpu(proc.pid) - supervisor) / seconds if processes > 1 else 0.0
    finally:
        proc.send_signal(signal.SIGTERM)  # the supervisor passes it on
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {
        "processes": processes,
        "latency": FDB_LATENCY if latency else None,
        "total": round(sum(each), 4),
        "each_mean": round(sum(each) / len(each), 4),
        "each_min": round(each[0], 4),
        "each_max": round(each[-1], 4),
        "supervisor": round(supervisor, 4),
        "load1": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,4,16", help="process counts, comma-separated")
    parser.add_argument("--latency", action="store_true", help="only with ?latency= (FDB's)")
    parser.add_argument("--plain", action="store_true", help="only without ?latency=")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    args = parser.parse_args()
    kinds = [False, True]
    if args.latency != args.plain:
        kinds = [args.latency]
    print(f"quick {code_version()}")
    for count in (int(c) for c in args.counts.split(",")):
        for latency in kinds:
            print(json.dumps(measure(count, latency, args.warmup, args.window)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
