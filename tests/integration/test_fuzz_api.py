"""A few hundred random hostile calls of the public API (``scripts/fuzz_api.py``): only
clean refusals, and no refused call that wrote. Run the script by hand for thousands."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_api.py"


def _fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_api", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [21, 22])
def test_api_fuzz_finds_only_clean_refusals(tmp_path: Path, seed: int) -> None:
    failures, outcomes = _fuzz_module().fuzz(300, seed, tmp_path)
    assert not failures, "\n".join(str(f) for f in failures[:5])
    assert any(k.endswith(" ok") for k in outcomes), outcomes
    assert any(k.endswith(" refused") for k in outcomes), outcomes


def test_api_fuzz_set_queue_limits_refuses_huge_tiny_and_odd_limits(tmp_path: Path) -> None:
    """Limits past a float or msgpack (``2**70``, ``10**400``) and rates that would freeze a
    queue (``1e-300``) are refused as InvalidArgument, never OverflowError or TypeError."""
    failures, outcomes = _fuzz_module().fuzz(300, 23, tmp_path, only=["set_queue_limits"])
    assert not failures, "\n".join(str(f) for f in failures[:5])
    assert outcomes["set_queue_limits ok"] > 0
    assert outcomes["set_queue_limits refused"] > 0


#: The entry points issue 18 added: the async twins and typed calls.
NEW_ENTRY_POINTS = [
    "aio.enqueue",
    "aio.enqueue_many",
    "aio.job_state",
    "aio.cancel",
    "aio.transact",
    "typed",
    "typed_run",
]


def test_api_fuzz_async_twins_and_typed_calls_refuse_cleanly(tmp_path: Path) -> None:
    """The async API (under asyncio and trio) and typed calls: only clean refusals, none
    after writing (an async transaction's own key included), and stored payloads that do
    not fit a typed handler fail their attempt rather than raise out of the run."""
    failures, outcomes = _fuzz_module().fuzz(600, 24, tmp_path, only=NEW_ENTRY_POINTS)
    assert not failures, "\n".join(str(f) for f in failures[:5])
    for name in NEW_ENTRY_POINTS:
        assert outcomes[f"{name} ok"] > 0, (name, outcomes)
        if name != "typed_run":
            assert outcomes[f"{name} refused"] > 0, (name, outcomes)
