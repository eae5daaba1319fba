"""Fixtures of the integration tests: ``stores``, a source and a destination file for
the migration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import quick
from keyspace.protocol import Database
from tests.conftest import FAULTS

__all__ = ["stores"]


@pytest.fixture(params=["sqlite", "faulty-sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """A source and a destination store (both fault-injecting for ``faulty-sqlite``)."""
    query = f"?faults={FAULTS}&seed=3" if request.param == "faulty-sqlite" else ""
    a, b = f"sqlite:///{tmp_path / 'a.db'}{query}", f"sqlite:///{tmp_path / 'b.db'}{query}"
    with quick.open(a) as source, quick.open(b) as dest:
        yield source, dest
