"""quick.aio is loaded on first use, and stays in its layer."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(code: str) -> set[str]:
    script = f"import json, sys; {code}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, text=True)
    return set(json.loads(out.stdout))


def test_aio_import_quick_loads_no_async_machinery() -> None:
    loaded = _loaded_after("import quick")
    assert not {"quick.aio", "asyncio", "anyio"} & loaded


def test_aio_quick_aio_stays_in_the_quick_layer() -> None:
    loaded = _loaded_after("import quick; quick.aio.enqueue")
    assert "quick.aio" in loaded
    assert not {"consumer", "workflow", "anyio", "click"} & loaded


def test_aio_workflow_aio_loads_on_first_use() -> None:
    assert "workflow.aio" not in _loaded_after("import workflow")
    assert "workflow.aio" in _loaded_after("import workflow; workflow.aio.signal")
