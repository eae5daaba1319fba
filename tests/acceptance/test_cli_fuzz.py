"""A few hundred random invocations of the CLI (``scripts/fuzz_cli.py``): no traceback,
and no refused call that wrote to the store. Run the script by hand for thousands."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_cli.py"


def _fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_cli", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [11, 12])
def test_cli_fuzz_finds_no_traceback_and_no_refused_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.chdir(tmp_path)
    failures, codes = _fuzz_module().fuzz(250, seed, tmp_path)
    assert not failures, "\n".join(str(f) for f in failures[:5])
    assert codes[0], codes  # it reached the library
    assert codes[2], codes  # and the usage checks
