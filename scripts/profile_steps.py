"""Profile the workflow step path in real workers with py-spy, and sum the profile up.

Starts ``--runs`` runs of one shape of ``scripts/bench_workflow.py`` (or plain jobs, for
comparison) on a fresh sqlite file, then drains them with ``quick worker --app
bench_workflow:app --processes 2`` under ``py-spy record --subprocesses --format raw``
(py-spy must be installed: ``.venv/bin/pip install py-spy``). The raw profile (collapsed
stacks, one line per stack with its sample count) is kept in ``--out``; the summary
printed is the share of the workers' samples each function is on the stack for
(inclusive) and at the top of (self), for the functions that matter most. Run it from
the repository root::

    .venv/bin/python scripts/profile_steps.py --shape chain --runs 1000
    .venv/bin/python scripts/profile_steps.py --shape queue --runs 1000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import bench_workflow as bench
from benchlib import PROJECT_ROOT, SCRIPTS, worker_argv

import quick
import workflow


def _fill(url: str, shape: str, runs: int) -> int:
    """Start the runs (or enqueue the jobs); how many handler lines the drain records."""
    with quick.open(url) as db:
        if shape == "queue":
            jobs = runs * bench.STEPS
            for first in range(0, jobs, 500):
                specs = [
                    {"queue_id": f"tenant-{i % 10}", "topic": bench.JOB_TOPIC, "payload": i}
                    for i in range(first, min(jobs, first + 500))
                ]
                quick.enqueue_many(db, specs)
            return jobs
        wf = bench.SHAPES[shape]()
        for i in range(runs):
            workflow.start_run(db, wf, i, queue_id=f"tenant-{i % 10}")
        return runs * len(wf.steps)


def _name(frame: str) -> str:
    """``function (file.py)`` from py-spy's ``function (path/file.py:line)``."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit('/', 1)[-1].split(':')[0]})"


def summarize(raw: Path, top: int) -> list[str]:
    """The functions with the largest inclusive share of the samples, with their self share."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_name(frame) for frame in stack.split(";")]
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"{total} samples", "| function | inclusive | self |", "|---|--:|--:|"]
    for frame, n in inclusive.most_common(top):
        lines.append(f"| `{frame}` | {100 * n / total:.1f}% | {100 * own[frame] / total:.1f}% |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=["queue", *bench.SHAPES], default="chain")
    parser.add_argument("--runs", type=int, default=1000, help="runs (queue: runs x 10 jobs)")
    parser.add_argument("--out", type=Path, default=Path("profile_steps.txt"), help="raw profile")
    parser.add_argument("--top", type=int, default=60, help="functions to show")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="profile_steps_") as temp:
        url = f"sqlite:///{Path(temp) / 'p.db'}"
        record = Path(temp) / "record"
        expected = _fill(url, args.shape, args.runs)
        path = os.pathsep.join([str(SCRIPTS), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, bench.RECORD_ENV: str(record), "PYTHONPATH": path}
        worker = worker_argv(url, "bench_workflow:app", bench.PROCESSES, "--log-level", "warning")
        command = [spy, "record", "--subprocesses", "--format", "raw", "--rate", str(args.rate)]
        command += ["-o", str(args.out), "--", *worker]
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL)
        began = time.monotonic()
        while len(record.read_text().splitlines() if record.exists() else []) < expected:
            if proc.poll() is not None or time.monotonic() - began > 600:
                print("the worker stopped or did not drain in 600 s", file=sys.stderr)
                proc.kill()
                return 1
            time.sleep(0.1)
        drained = time.monotonic() - began
        time.sleep(0.5)  # the last settlements commit
        for child in _children(proc.pid):
            os.kill(child, 15)
        proc.wait(60)
    print(f"{expected} handler runs drained in {drained:.1f} s (with start-up)")
    print("\n".join(summarize(args.out, args.top)))
    return 0


def _children(pid: int) -> list[int]:
    """The worker command's supervisor (py-spy's child): SIGTERM stops it cleanly."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in found.split()]


if __name__ == "__main__":
    sys.exit(main())
