"""Layers depend downward only: keyspace imports neither trio nor click nor higher layers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    "keyspace": {"trio", "click", "quick", "consumer", "workflow"},
    "quick": {"click", "consumer", "workflow", "quick.cli"},
    "consumer": {"click", "workflow", "quick.cli"},
    "workflow": {"click", "quick.cli"},
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_layer_pulls_in_nothing_above_it(layer: str) -> None:
    code = f"import json, sys; import {layer}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    loaded = set(json.loads(out.stdout))
    assert not (FORBIDDEN[layer] & loaded), FORBIDDEN[layer] & loaded
