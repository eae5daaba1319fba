"""Each package shows its face: ``consumer`` exports the consumer and its configuration
(without loading trio until the consumer is used), and every package ships ``py.typed``
where the packaging picks it up."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import consumer
from consumer.config import ConsumerConfig
from consumer.runtime import Consumer

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["keyspace", "quick", "consumer", "workflow"]


def test_consumer_exports_its_face() -> None:
    assert sorted(consumer.__all__) == ["Consumer", "ConsumerConfig"]
    assert consumer.Consumer is Consumer
    assert consumer.ConsumerConfig is ConsumerConfig
    with pytest.raises(AttributeError, match="no attribute 'Runners'"):
        _ = consumer.Runners


def test_consumer_config_loads_without_trio() -> None:
    code = (
        "import json, sys; from consumer import ConsumerConfig; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert "trio" not in json.loads(out.stdout)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_ships_py_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in settings["package-data"]["*"]
    assert f"{package}*" in settings["packages"]["find"]["include"]
