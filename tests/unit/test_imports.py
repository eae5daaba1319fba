"""Layers depend downward only: keyspace imports neither trio nor click nor higher layers;
the CLI package imports cleanly module by module, without circles."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import quick.cli

FORBIDDEN = {
    "keyspace": {"trio", "click", "quick", "consumer", "workflow"},
    "quick": {"click", "consumer", "workflow", "quick.cli", "quick.testing", "pytest"},
    "consumer": {"click", "workflow", "quick.cli"},
    "workflow": {"click", "quick.cli"},
}

#: Every module of the CLI package.
CLI_MODULES = sorted(f"quick.cli.{m.name}" for m in pkgutil.iter_modules(quick.cli.__path__))


def _loaded_after(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_layer_pulls_in_nothing_above_it(layer: str) -> None:
    loaded = _loaded_after(layer)
    assert not (FORBIDDEN[layer] & loaded), FORBIDDEN[layer] & loaded


@pytest.mark.parametrize("module", ["quick.cli", *CLI_MODULES])
def test_imports_each_cli_module_imports_alone_without_workflow(module: str) -> None:
    """Each CLI module imports first in a fresh process (a cycle would fail here), and none
    pulls in the workflow layer: ``runs`` imports it per command."""
    assert "workflow" not in _loaded_after(module)


def test_imports_cli_package_lists_its_command_modules() -> None:
    assert {"common", "main", "queue", "worker", "dlq", "cron", "runs", "inspect"} <= {
        name.rsplit(".", 1)[1] for name in CLI_MODULES
    }


def test_imports_cli_modules_take_no_private_names_from_each_other() -> None:
    """Shared things have public names in ``quick.cli.common``; nothing imports ``_x``."""
    import ast
    from pathlib import Path

    for path in Path(quick.cli.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_imports_testing_module_needs_neither_pytest_nor_trio() -> None:
    """``quick.testing`` is usable outside pytest; its fixtures and trio load on demand."""
    loaded = _loaded_after("quick.testing")
    assert not {"pytest", "trio", "consumer", "click"} & loaded
