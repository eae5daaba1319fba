"""The dashboard's finding pages over HTTP: a job by id, a queue's jobs by topic and state
(paged), the SVG chart of jobs finished per minute, and the limits page."""

from __future__ import annotations

import re

import pytest

from tests.extras import require_dashboard

require_dashboard()

from flask.testing import FlaskClient

import quick
from keyspace.protocol import Database
from quick.dashboard import create_app
from quick.dashboard.explore import chart, read_jobs_page
from quick.jobs import now_ms
from quick.throughput import MINUTE_MS, MinuteCount, finished_per_minute
from tests.acceptance.dashboard_store import SCRIPT, Seeded
from tests.acceptance.test_dashboard import _page, seeded, store

__all__ = ["seeded", "store"]  # the fixtures, shared with the other dashboard tests


@pytest.fixture
def reader(store: Database, seeded: Seeded) -> FlaskClient:
    return create_app(store).test_client()


def test_dashboard_find_goes_to_the_job_by_id_alone(reader: FlaskClient, seeded: Seeded) -> None:
    response = reader.get(f"/find?id={seeded.job}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/job?queue={seeded.queue}&id={seeded.job}"
    assert seeded.job in _page(reader, response.headers["Location"])
    assert "no job &#39;nope&#39;" in _page(reader, "/find?id=nope", 404)
    assert 'name="id"' in _page(reader, "/find")


def test_dashboard_jobs_filter_by_topic_and_state(
    reader: FlaskClient, store: Database, seeded: Seeded
) -> None:
    html = _page(reader, f"/jobs?queue={seeded.queue}&topic=email:send&state=ready")
    assert seeded.job in html
    assert seeded.script_job not in html  # scheduled
    html = _page(reader, f"/jobs?queue={seeded.queue}&state=scheduled")
    assert seeded.script_job in html
    assert seeded.job not in html
    assert SCRIPT not in html  # the payload never reaches the page as markup
    html = _page(reader, f"/jobs?queue={seeded.queue}&state=dead")
    assert seeded.dead in html
    assert '<span class="state dead">dead</span>' in html
    assert seeded.job not in html
    assert "no matching jobs" in _page(reader, f"/jobs?queue={seeded.queue}&topic=report:none")
    assert "unknown state" in _page(reader, f"/jobs?queue={seeded.queue}&state=odd", 400)
    _page(reader, "/jobs", 400)


def test_dashboard_jobs_pages_through_a_queue_and_its_scan_budget(
    store: Database,
) -> None:
    ids = quick.enqueue_many(
        store,
        [{"queue_id": "big", "topic": "a" if i % 3 else "b", "payload": i} for i in range(30)],
    )
    now = now_ms()
    seen: list[str] = []
    after = None
    while True:
        page = store.transact(
            lambda tr, after=after: read_jobs_page(
                tr, "big", now, topic="b", after=after, rows=4, budget=7
            )
        )
        seen += [job.id for job in page.items]  # type: ignore[union-attr]
        assert page.scanned <= 7
        if page.resume is None:
            break
        after = page.resume
    assert seen == [job_id for i, job_id in enumerate(ids) if i % 3 == 0]
    client = create_app(store).test_client()
    html = _page(client, "/jobs?queue=big&topic=a")
    assert re.search(r'href="/jobs\?queue=big&amp;topic=a&amp;after=[0-9a-f]+"', html) is None
    assert html.count('href="/job?queue=big') == 20


def test_dashboard_chart_counts_jobs_finished_per_minute(
    reader: FlaskClient, store: Database, seeded: Seeded
) -> None:
    for claim in quick.claim(store, "tenant-2", "w", limit=5):
        quick.complete(store, claim)
    now = now_ms()
    counts = store.transact(lambda tr: finished_per_minute(tr, now))
    assert len(counts) == 60
    assert counts[-1].minute_ms == now - now % MINUTE_MS
    assert sum(c.finished for c in counts) >= 1  # the seed's own finished jobs, and ours
    mine = store.transact(lambda tr: finished_per_minute(tr, now, queue="tenant-2"))
    assert sum(c.finished for c in mine) == 1
    html = _page(reader, "/throughput?queue=tenant-2")
    assert html.count("<svg") == 2
    assert "queue tenant-2: 1 in the hour" in html
    assert "<script" not in html


def test_dashboard_chart_layout_is_pure_and_scaled_to_the_peak() -> None:
    counts = [MinuteCount(minute_ms=i * MINUTE_MS, finished=n) for i, n in enumerate([0, 5, 10])]
    drawn = chart(counts, bar_width=10, height=110)
    assert [b.height for b in drawn.bars] == [0, 50, 100]
    assert [b.y for b in drawn.bars] == [110, 60, 10]
    assert drawn.peak == 10
    assert drawn.total == 15
    assert drawn.ticks[-1] == (20, "now")
    assert chart([]).bars == []


def test_dashboard_limits_page_shows_queue_and_keyed_limits(
    reader: FlaskClient, store: Database
) -> None:
    assert "no keyed limits" in _page(reader, "/limits")
    quick.set_queue_limits(store, "tenant-1", max_running=4)
    quick.set_key_limits(store, "stripe-api", max_running=2, max_per_second=1.5)
    quick.enqueue(store, "tenant-9", "charge", {}, limit_keys=["stripe-api"])
    quick.claim(store, "tenant-9", "w")
    html = _page(reader, "/limits")
    assert "<code>stripe-api</code>" in html
    row = re.search(r"<code>stripe-api</code></td>\s*(.*?)</tr>", html, re.S)
    assert row is not None
    assert re.findall(r'class="num">([^<]+)<', row.group(1)) == ["1", "2", "1.5"]
    assert "tenant-1" in html
    job_id = quick.enqueue(store, "tenant-9", "charge", {}, limit_keys=["stripe-api", "c:7"])
    html = _page(reader, f"/job?queue=tenant-9&id={job_id}")
    assert "<code>stripe-api</code>, <code>c:7</code>" in html


def test_dashboard_chart_counts_older_than_an_hour_go_with_the_purge(store: Database) -> None:
    quick.enqueue(store, "q", "t", None)
    (claim,) = quick.claim(store, "q", "w")
    long_ago = now_ms() - 2 * 3_600_000
    quick.complete(store, claim, now_ms=long_ago)
    counts = store.transact(lambda tr: finished_per_minute(tr, long_ago + 1, queue="q"))
    assert counts[-1].finished == 1
    quick.purge_finished(store, older_than_ms=10 * 3_600_000)  # keeps the tombstone
    counts = store.transact(lambda tr: finished_per_minute(tr, long_ago + 1, queue="q"))
    assert counts[-1].finished == 0
