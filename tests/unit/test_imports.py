"""Layers depend downward only: keyspace imports neither trio nor click nor higher layers;
the CLI package imports cleanly module by module, without circles."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

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
    for path in Path(quick.cli.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_imports_testing_module_needs_neither_pytest_nor_trio() -> None:
    """``quick.testing`` is usable outside pytest; its fixtures and trio load on demand."""
    loaded = _loaded_after("quick.testing")
    assert not {"pytest", "trio", "consumer", "click"} & loaded


# -- no import circles -------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("keyspace", "quick", "consumer", "workflow")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of the others, wherever the import statement sits (type-only
    and function-level ones included: each is a dependency a reader has to follow)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else known(base))
        graph[module] = {target for target in targets if target and target != module}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return out


#: Circles still to open (each a list of its modules, sorted).
KNOWN_CIRCLES: list[list[str]] = []


def test_imports_form_no_circle() -> None:
    modules = _modules()
    assert len(modules) > 80, "the module scan found too little: is it broken?"
    circles = [group for group in _circles(_imports(modules)) if group not in KNOWN_CIRCLES]
    assert not circles, f"modules that import each other, directly or around a circle: {circles}"


def test_imports_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
