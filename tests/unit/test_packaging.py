"""Every test environment installs the same extras: the compose image (docker/Dockerfile),
``.ci/run`` (which reads them from the Dockerfile) and ``scripts/test``; and a test module
that needs an optional extra is skipped with its reason when the extra is absent."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.extras import DASHBOARD_MODULES, DASHBOARD_REASON, DJANGO_MODULES, DJANGO_REASON

ROOT = Path(__file__).resolve().parents[2]
#: A literal extras list in a pip install of the project: ``-e '.[test,dashboard]'``.
LITERAL_EXTRAS = re.compile(r"""-e ['"]\.\[([a-z,]+)\]['"]""")


def _dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", (ROOT / "docker/Dockerfile").read_text(), re.M)
    assert match, f"docker/Dockerfile sets no default for ARG {name}"
    return match.group(1)


def _extras(spelled: str) -> set[str]:
    return set(spelled.split(","))


def test_packaging_dockerfile_installs_every_extra_of_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(pyproject["project"]["optional-dependencies"])
    assert _extras(_dockerfile_arg("QUICK_EXTRAS")) == declared
    assert (
        'pip install --no-cache-dir -e ".[${QUICK_EXTRAS}]"'
        in (ROOT / "docker/Dockerfile").read_text()
    )


def test_packaging_ci_run_reads_the_extras_and_binding_from_the_dockerfile() -> None:
    """Runs ``.ci/run``'s own ``dockerfile_arg`` function, and checks that no install in it
    spells the extras out."""
    ci_run = (ROOT / ".ci/run").read_text()
    function = next(line for line in ci_run.splitlines() if line.startswith("dockerfile_arg()"))
    script = f"{function}\ndockerfile_arg QUICK_EXTRAS; dockerfile_arg FDB_VERSION"
    out = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [_dockerfile_arg("QUICK_EXTRAS"), _dockerfile_arg("FDB_VERSION")]
    assert "extras=$(dockerfile_arg QUICK_EXTRAS)" in ci_run
    assert not LITERAL_EXTRAS.findall(ci_run)
    assert ci_run.count('-e ".[$extras]"') == 2


def test_packaging_scripts_test_installs_the_dockerfile_extras() -> None:
    spelled = LITERAL_EXTRAS.findall((ROOT / "scripts/test").read_text())
    assert spelled
    assert all(_extras(s) == _extras(_dockerfile_arg("QUICK_EXTRAS")) for s in spelled)


def test_packaging_compose_runs_the_dockerfile_fdb_version() -> None:
    defaults = re.findall(r"\$\{FDB_VERSION:-([^}]+)\}", (ROOT / "docker-compose.yml").read_text())
    assert defaults
    assert set(defaults) == {_dockerfile_arg("FDB_VERSION")}


BLOCKED_COLLECTION = """
import importlib.abc, sys
import pytest

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.exit(pytest.main(["--collect-only", "-q", "-rs", "-p", "no:cacheprovider", "tests"]))
"""


@pytest.mark.parametrize(
    ("modules", "reason", "needing"),
    [
        (DASHBOARD_MODULES, DASHBOARD_REASON, r"test_dashboard\w*\.py::"),
        (DJANGO_MODULES, DJANGO_REASON, r"test_django\w*\.py::"),
    ],
    ids=["dashboard", "django"],
)
def test_packaging_suite_collects_without_an_extra(
    modules: tuple[str, ...], reason: str, needing: str
) -> None:
    """With an extra's packages unimportable, collection succeeds and the modules that
    need them are skipped, naming the extra."""
    code = BLOCKED_COLLECTION.format(blocked=set(modules))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert any(reason in line for line in summary), result.stdout[-3000:]
    collected = result.stdout.split("short test summary")[0]
    assert not re.search(needing, collected), collected[-3000:]
