"""What every benchmark script shares: its common options, the refusal of a run that fails
its checks, and the closing part it prints and saves (the machine, the command, JSON)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BrokenRun",
    "add_common_arguments",
    "check_common",
    "report_broken",
    "command_line",
    "print_footer",
    "write_json",
]


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
