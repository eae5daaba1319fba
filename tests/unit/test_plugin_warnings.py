"""quick's pytest plugin loads into other projects' suites (a ``pytest11`` entry point), so
importing quick must leave no warning-raising import hook behind for them to trip over."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

USER_PYPROJECT = """
[tool.pytest.ini_options]
filterwarnings = ["error"]
"""

USER_TESTS = """
import quick

def test_an_optional_import_fails_quietly(quick_db):
    try:
        import surely_no_such_module_for_quick  # noqa: F401
    except ImportError:
        pass
    quick.enqueue(quick_db, "tenant-1", "email:send", None)
"""

FINDERS = """
import json, sys
import quick, quick.testing, consumer, workflow, quick.cli
print(json.dumps([type(f).__name__ for f in sys.meta_path if not hasattr(f, "find_spec")]))
"""


def test_plugin_warnings_importing_quick_leaves_no_finder_without_find_spec() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", FINDERS], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_plugin_warnings_a_project_with_warnings_as_errors_runs_with_the_plugin(
    tmp_path: Path,
) -> None:
    """A user's project, ``filterwarnings = ["error"]`` and ``-W error``, the plugin loaded
    from its entry point (the test asks for ``quick_db``): it starts and passes."""
    (tmp_path / "pyproject.toml").write_text(USER_PYPROJECT)
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "pytest",
            "-W",
            "error",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
