"""What every benchmark script shares, so each keeps only its workloads: settings common to
all (``--reps``, ``--scale``, ``--json``, ``--dir``), scaled counts, fresh temporary
directories, ``quick worker`` processes and the record files their jobs append to, CPU
accounting, percentiles and medians, the Markdown report tables, the refusal of a run that
fails its checks, and the closing part every script prints and saves (the machine, the
command, JSON)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import quick
from keyspace import Database, Transaction
from keyspace.codec import unpack_value
from keyspace.layout import JOB_DIRECTORY

__all__ = [
    "BrokenRun",
    "PROJECT_ROOT",
    "SCRIPTS",
    "Records",
    "Workers",
    "add_common_arguments",
    "add_only_argument",
    "alternating",
    "check_all_ran",
    "check_checkout",
    "check_common",
    "check_drained",
    "children_cpu",
    "code_version",
    "command_line",
    "cpu_seconds",
    "fresh_directory",
    "job_directory",
    "load_module",
    "median_of",
    "percentile",
    "print_footer",
    "private_tempdir",
    "rate",
    "report_broken",
    "scaled",
    "spread",
    "table",
    "worker_argv",
    "write_json",
]

SCRIPTS = Path(__file__).resolve().parent
PROJECT_ROOT = SCRIPTS.parent
POLL = 0.02  # seconds between a driver's looks at a record file
STOP_GRACE = 60.0  # seconds workers get to exit after SIGTERM before SIGKILL

T = TypeVar("T")


class BrokenRun(RuntimeError):
    """A run whose results fail verification; it reports no numbers."""


def report_broken(error: BrokenRun) -> int:
    """Say why no numbers are reported; the exit code for it."""
    print(f"BROKEN RUN, no numbers reported: {error}", file=sys.stderr)
    return 1


def add_common_arguments(
    parser: argparse.ArgumentParser, *, scale: str | None = "multiply every job count"
) -> None:
    """``--reps``, ``--scale`` (unless ``scale`` is None; its help text), ``--json``, ``--dir``."""
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    if scale is not None:
        parser.add_argument("--scale", type=float, default=1.0, help=scale)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument(
        "--dir", type=Path, default=None, help="parent of the temporary files (default: $TMPDIR)"
    )


def add_only_argument(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """``--only NAME`` (repeatable): run only these of the script's workloads."""
    parser.add_argument(
        "--only",
        action="append",
        choices=list(names),
        metavar="NAME",
        help=f"run only these workloads (repeatable; {', '.join(names)})",
    )


def check_common(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (as a usage error) repetitions below one and a non-positive scale."""
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if getattr(args, "scale", 1.0) <= 0:
        parser.error("--scale must be positive")


def command_line(name: str, argv: Sequence[str] | None) -> str:
    """The command that produced this run, as a person would type it."""
    return shlex.join(sys.orig_argv) if argv is None else shlex.join([name, *argv])


def print_footer(command: str, total_seconds: float) -> None:
    """The machine and versions the numbers came from, and the command."""
    print()
    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cpus, total {total_seconds:.1f} s"
    )
    print(f"command: {command}")


def write_json(
    path: Path | None,
    command: str,
    argv: Sequence[str] | None,
    total_seconds: float,
    results: dict[str, Any],
) -> None:
    """Save the run with its environment to ``path`` (nothing when None)."""
    if path is None:
        return
    report = {
        "command": command,
        "argv": list(sys.argv if argv is None else argv),
        "python": sys.version,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "total_seconds": total_seconds,
        **results,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {path}")


# -- counts, directories, repetitions -----------------------------------------------------


def scaled(count: int, scale: float, multiple: int = 1) -> int:
    """``count`` times ``scale``, at least 1, rounded up to a multiple of ``multiple``."""
    wanted = max(1, round(count * scale))
    return -(-wanted // multiple) * multiple


@contextmanager
def fresh_directory(prefix: str, parent: Path | None) -> Iterator[Path]:
    """A new temporary directory under ``parent`` (default $TMPDIR), removed afterwards."""
    temp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@contextmanager
def private_tempdir(parent: Path | None) -> Iterator[None]:
    """Point ``tempfile`` at a private directory, removed afterwards (for code whose
    ``mkdtemp()`` never cleans up)."""
    with fresh_directory("bench_floor_", parent) as private:
        saved = tempfile.tempdir
        tempfile.tempdir = str(private)
        try:
            yield
        finally:
            tempfile.tempdir = saved


def alternating(schedule: Sequence[T], reps: int) -> Iterator[tuple[int, T]]:
    """``(rep, item)`` for every repetition, the order reversed on every other one so no
    item always runs first."""
    for rep in range(reps):
        for item in schedule if rep % 2 == 0 else reversed(schedule):
            yield rep, item


def load_module(path: Path, name: str) -> ModuleType | None:
    """The module in the file ``path``, imported as ``name``; None when there is none."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_directory(db: Database) -> dict[str, Any]:
    """Every job directory entry (the tombstones of finished jobs among them), by job id."""

    def read(tr: Transaction) -> dict[str, Any]:
        return {
            JOB_DIRECTORY.unpack(key)[0]: unpack_value(value)
            for key, value in tr.snapshot.get_range(*JOB_DIRECTORY.range())
        }

    return db.transact(read)


# -- worker processes and record files ------------------------------------------------------


def worker_argv(
    url: str,
    app: str,
    processes: int,
    *extra: str,
    concurrency: int | None = None,
    batch_size: int | None = None,
) -> list[str]:
    """``python -m quick --db URL worker --app APP --processes N``, ``extra`` options, and
    ``--concurrency`` and ``--batch-size`` when given (the worker's defaults otherwise)."""
    argv = [sys.executable, "-m", "quick", "--db", url, "worker", "--app", app]
    argv += ["--processes", str(processes), *extra]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if batch_size is not None:
        argv += ["--batch-size", str(batch_size)]
    return argv


class Workers:
    """``quick worker`` launched in its own session, its output appended to ``log``, the
    record file's path in ``$record_env``; stopped with SIGTERM, as in production."""

    def __init__(self, argv: list[str], record_env: str, record: Path, log: Path) -> None:
        path = os.pathsep.join([str(SCRIPTS), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, record_env: str(record), "PYTHONPATH": path}
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM (graceful: the supervisor forwards it), wait, then SIGKILL the session."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session this script started
            self.proc.wait()
            return -signal.SIGKILL

    def stop_cleanly(self) -> None:
        """Stop; a run whose workers do not exit with 0 on SIGTERM is broken."""
        code = self.stop()
        if code != 0:
            raise BrokenRun(f"workers exited with {code} after SIGTERM:\n{self.tail()}")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-15:])


class Records:
    """The driver's side of a record file (one line per job run): counts complete lines
    as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._count = 0
        path.write_bytes(b"")

    def count(self) -> int:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n")
        if end >= 0:
            self._count += chunk.count(b"\n", 0, end + 1)
            self._offset += end + 1
        return self._count

    def wait_for(self, target: int, workers: Workers, timeout: float) -> float:
        """Poll until ``target`` lines are there; the time they were seen (wall clock)."""
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if not workers.alive():
                raise BrokenRun(f"workers exited with {workers.proc.returncode}:\n{workers.tail()}")
            if time.monotonic() > deadline:
                raise BrokenRun(f"only {self._count} of {target} jobs ran within {timeout:.0f} s")
            time.sleep(POLL)
        return time.time()

    def lines(self) -> list[str]:
        """Every line written so far."""
        return self.path.read_text().splitlines()

    def first_starts(self) -> tuple[dict[int, tuple[float, float]], int]:
        """For ``bench_jobs``' lines, ``{i: (t_enqueue, first t_start)}`` and how many
        lines were repeats of an id."""
        first: dict[int, tuple[float, float]] = {}
        repeats = 0
        for line in self.path.read_bytes().splitlines():
            i, t_enqueue, t_start, _pid = line.split()
            key = int(i)
            if key in first:
                repeats += 1
                first[key] = min(first[key], (float(t_enqueue), float(t_start)), key=lambda p: p[1])
            else:
                first[key] = (float(t_enqueue), float(t_start))
        return first, repeats


def check_all_ran(first: dict[int, tuple[float, float]], expected: range) -> None:
    """Every job id in ``expected`` ran, and no other."""
    missing = [i for i in expected if i not in first]
    extra = first.keys() - set(expected)
    if missing or extra:
        raise BrokenRun(
            f"{len(missing)} jobs never ran (e.g. {missing[:5]}), {len(extra)} unexpected ids"
        )


def check_drained(db: Database, queues: Iterable[str]) -> None:
    """Every counter of every queue in ``queues`` is zero."""
    for queue in queues:
        counts = quick.queue_counts(db, queue)
        if any(counts.values()):
            raise BrokenRun(f"queue {queue!r} not empty after the workers stopped: {counts}")


def check_checkout() -> None:
    """The driver must run the same code as the workers it starts (PROJECT_ROOT's)."""
    where = Path(quick.__file__).resolve().parent.parent
    if where != PROJECT_ROOT:
        raise SystemExit(
            f"quick is imported from {where}, not from {PROJECT_ROOT} whose workers this "
            f"script starts: run it with PYTHONPATH={PROJECT_ROOT}"
        )


# -- CPU accounting ---------------------------------------------------------------------------


def children_cpu() -> float:
    """CPU seconds (user + system) used by this script's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes have used since boot, CPU seconds this script and its
    waited-for children have used); the difference over a run is everybody else's."""
    own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = sum(r.ru_utime + r.ru_stime for r in own)
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return math.nan, mine
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), mine


def code_version() -> str:
    """The commit measured, and whether the library had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "keyspace", "quick", "consumer", "workflow")
    return f"{commit} (uncommitted library changes)" if dirty else commit


# -- statistics and tables -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))]


def median_of(
    reps: Sequence[dict[str, float]], keys: Iterable[str] | None = None
) -> dict[str, float]:
    """The median of each key (default: the first repetition's keys) over ``reps``."""
    return {key: statistics.median(r[key] for r in reps) for key in keys or reps[0]}


def spread(values: Sequence[float], digits: int) -> str:
    """The median of ``values``, and their (min-max) when there are several."""
    med, low, high = statistics.median(values), min(values), max(values)
    extent = f" ({low:,.{digits}f}-{high:,.{digits}f})" if len(values) > 1 else ""
    return f"{med:,.{digits}f}{extent}"


def rate(value: float | None) -> str:
    """A rate as a whole number with thousands separators; ``n/a`` for None."""
    return "n/a" if value is None else f"{value:,.0f}"


def table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table: ``columns`` are (heading, alignment row cell such as ``---`` or
    ``--:``), each row its cells, already formatted."""
    lines = [
        "| " + " | ".join(heading for heading, _ in columns) + " |",
        "|" + "|".join(align for _, align in columns) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
