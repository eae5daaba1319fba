"""The dashboard's job page shows a finished job's result, a discard's reason, and names
a corrupt result record by its key."""

from __future__ import annotations

from pathlib import Path

from tests.extras import require_dashboard

require_dashboard()

from flask.testing import FlaskClient

import quick
from keyspace.layout import RESULTS
from quick.dashboard import create_app

SCRIPT = "<script>alert(1)</script>"


def _page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def test_dashboard_job_page_shows_the_result(tmp_path: Path) -> None:
    with quick.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
        done, discarded, rotten, pending = (quick.enqueue(db, "t1", "t", n) for n in range(4))
        claims = {c.job_id: c for c in quick.claim(db, "t1", "w", limit=10)}
        quick.complete(db, claims[done], result={"html": SCRIPT, "rows": 12})
        quick.discard(db, claims[discarded], "duplicate order")
        quick.complete(db, claims[rotten], result=1)
        quick.release(db, claims[pending])
        db.transact(lambda tr: tr.set(RESULTS.pack((rotten,)), b"\x01\xc1"))
        client = create_app(db, allow_actions=False).test_client()
        html = _page(client, f"/job?queue=t1&id={done}")
        assert "<h2>Result</h2>" in html
        assert "&#34;rows&#34;: 12" in html
        assert "&lt;script&gt;" in html
        assert SCRIPT not in html  # escaped
        assert "duplicate order" in _page(client, f"/job?queue=t1&id={discarded}")
        broken = _page(client, f"/job?queue=t1&id={rotten}")
        assert "corrupt record at job result" in broken
        assert "<h2>Result</h2>" not in _page(client, f"/job?queue=t1&id={pending}")
