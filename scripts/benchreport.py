"""The closing part every benchmark script prints and saves: the machine, the command, JSON."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["command_line", "print_footer", "write_json"]


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
