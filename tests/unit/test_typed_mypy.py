"""mypy sees typed calls' arguments: a small user module with typed handlers checks clean,
and one passing a wrong type, a missing, an extra or a positional argument is rejected.

The modules (``tests/unit/mypy_cases``, left out of the helper-module
type check of ``scripts/test``) are checked in a subprocess with the
project's own mypy settings, as a user's CI would check theirs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = Path(__file__).resolve().parent / "mypy_cases"

pytest.importorskip("mypy", reason="needs mypy (the test extra)")


def _mypy(module: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            str(MODULES / module),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_typed_calls_type_check_in_a_user_module(tmp_path: Path) -> None:
    done = _mypy("typed_ok.py", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_typed_calls_with_wrong_arguments_are_rejected_by_mypy(tmp_path: Path) -> None:
    done = _mypy("typed_wrong.py", tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = {int(m.group(1)) for m in re.finditer(r"typed_wrong\.py:(\d+): error", done.stdout)}
    source = (MODULES / "typed_wrong.py").read_text().splitlines()
    wanted = {n for n, line in enumerate(source, 1) if line.rstrip().endswith("# mypy: error")}
    assert wanted, "the module marks the lines mypy must reject"
    assert lines == wanted, done.stdout
    assert 'incompatible type "int"; expected "str"' in done.stdout
