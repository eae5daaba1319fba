"""The dashboard's batch pages: ``/batches`` and ``/batch?id=``, an unknown id, a corrupt
batch record named while the rest is still listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.extras import require_dashboard

require_dashboard()

import quick
from keyspace.layout import BATCHES
from quick.dashboard import create_app
from tests.acceptance.batch_store import make_batch


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'b.db'}"


def test_dashboard_batch_pages(url: str) -> None:
    batch = make_batch(url)
    with quick.open(url) as db:
        client = create_app(db).test_client()
        listing = client.get("/batches").get_data(as_text=True)
        assert batch in listing
        page = client.get(f"/batch?id={batch}").get_data(as_text=True)
        assert "open to new members" in page
        assert "on_complete" in page
        assert page.count("<td>completed</td>") == 2
        assert client.get("/batch?id=nope").status_code == 404
        db.transact(lambda tr: tr.set(BATCHES.pack(("bad",)), b"\xff junk"))
        corrupt = client.get("/batch?id=bad")
        assert corrupt.status_code == 200
        assert "Corrupt batch bad" in corrupt.get_data(as_text=True)
        assert batch in client.get("/batches").get_data(as_text=True)  # the rest still listed
