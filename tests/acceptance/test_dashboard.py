"""The dashboard over HTTP (Flask's test client): every page, every action, the guards."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.extras import require_dashboard

require_dashboard()

from flask import Flask
from flask.testing import FlaskClient

import quick
import workflow
from keyspace.protocol import Database
from quick.dashboard import create_app
from tests.acceptance.dashboard_store import SCRIPT, Seeded, dead_letter, seed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    db = quick.open(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def seeded(store: Database) -> Seeded:
    return seed(store)


def _client(db: Database, *, allow_actions: bool) -> FlaskClient:
    app: Flask = create_app(db, allow_actions=allow_actions)
    return app.test_client()


@pytest.fixture
def reader(store: Database, seeded: Seeded) -> FlaskClient:
    return _client(store, allow_actions=False)


@pytest.fixture
def operator(store: Database, seeded: Seeded) -> FlaskClient:
    return _client(store, allow_actions=True)


def _page(client: FlaskClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def _token(client: FlaskClient, url: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', _page(client, url))
    assert found, "no CSRF token in the page's forms"
    return found.group(1)


def test_dashboard_overview_lists_queues_deepest_first_with_throughput(
    reader: FlaskClient, seeded: Seeded
) -> None:
    html = _page(reader, "/")
    assert "deepest first" in html
    assert "finished in the last minute" in html
    assert "oldest ready job" in html
    rows = re.findall(r'href="/queue\?name=([^"]+)"', html)
    assert rows[0] == "tenant-1"  # two waiting jobs: the deepest
    assert {"tenant-1", "tenant-2", "tenant-rot"} <= set(rows)
    assert reader.get("/").headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_dashboard_overview_pages_through_queues_by_name(store: Database) -> None:
    for i in range(5):
        quick.enqueue(store, f"q{i}", "t", i)
    app = create_app(store)
    from quick.dashboard import reads

    view = reads.read_overview(store, quick.jobs.now_ms(), window=2)
    assert [r.queue for r in view.rows] == ["q0", "q1"]
    assert view.next_after == "q1"
    rest = reads.read_overview(store, quick.jobs.now_ms(), after="q3", window=2)
    assert [r.queue for r in rest.rows] == ["q4"]
    assert rest.next_after is None
    assert "q4" in _page(app.test_client(), "/?after=q3")


def test_dashboard_queue_page_shows_jobs_in_claim_order_and_escapes_payloads(
    reader: FlaskClient, seeded: Seeded
) -> None:
    html = _page(reader, "/queue?name=tenant-1")
    ready = html.index(seeded.job)
    scheduled = html.index(seeded.script_job)
    assert ready < scheduled  # ready first, then scheduled by visibility
    assert f"/job?queue=tenant-1&amp;id={seeded.job}" in html
    job = _page(reader, f"/job?queue=tenant-1&id={seeded.script_job}")
    assert SCRIPT not in job
    assert "&lt;script&gt;alert(" in job
    assert "attempts" in job
    assert "lease owner" in job
    assert "last error" in job


def test_dashboard_job_page_of_a_dead_letter_shows_its_error_escaped(
    reader: FlaskClient, seeded: Seeded
) -> None:
    html = _page(reader, f"/job?queue=tenant-1&id={seeded.dead}")
    assert "Dead letter" in html
    assert "attempts" in html
    assert SCRIPT not in html
    assert "failed: &lt;script&gt;" in html
    assert "<form" not in html  # read-only: no buttons


def test_dashboard_missing_things_are_404_and_bad_input_400(reader: FlaskClient) -> None:
    _page(reader, "/job?queue=tenant-1&id=nope", 404)
    _page(reader, "/run?id=nope", 404)
    _page(reader, "/queue", 400)
    _page(reader, "/runs?status=bogus", 400)
    _page(reader, "/queue?name=tenant-1&limit=many", 400)


def test_dashboard_corrupt_records_are_named_and_the_rest_renders(
    reader: FlaskClient, seeded: Seeded
) -> None:
    queue = _page(reader, "/queue?name=tenant-rot")
    assert "corrupt record at job" in queue
    assert seeded.rotten_job in queue
    job = _page(reader, f"/job?queue=tenant-rot&id={seeded.rotten_job}")
    assert "corrupt record at job" in job
    dead = _page(reader, "/dead")
    assert "corrupt record at dead letter" in dead
    assert seeded.dead in dead
    cron = _page(reader, "/cron")
    assert "corrupt record at cron schedule" in cron
    assert "nightly" in cron
    runs = _page(reader, "/runs")
    assert "corrupt record at workflow run" in runs
    assert seeded.order_run in runs
    assert "corrupt record at workflow run" in _page(reader, "/run?id=rotten-run")


def test_dashboard_dead_letters_page_and_cron(reader: FlaskClient, seeded: Seeded) -> None:
    dead = _page(reader, "/dead?queue=tenant-1")
    assert seeded.dead in dead
    assert SCRIPT not in dead
    assert "Requeue" not in dead  # read-only
    cron = _page(reader, "/cron")
    assert "0 3 * * *" in cron
    assert "&lt;script&gt;" in cron
    assert SCRIPT not in cron


def test_dashboard_runs_filter_by_workflow_and_status_and_page(
    reader: FlaskClient, seeded: Seeded, store: Database
) -> None:
    failed = _page(reader, "/runs?status=failed")
    assert seeded.flaky_run in failed
    assert seeded.order_run not in failed
    order = _page(reader, "/runs?workflow=order")
    assert seeded.order_run in order
    assert seeded.flaky_run not in order
    first = _page(reader, "/runs?limit=1")
    nxt = re.search(r'href="(/runs\?[^"]*after_run=[^"]+)"', first)
    assert nxt is not None
    second = _page(reader, nxt.group(1).replace("&amp;", "&"))
    runs = [re.findall(r'href="/run\?id=([^"]+)"', page) for page in (first, second)]
    assert runs == [[seeded.flaky_run], [seeded.order_run]]  # failed < running, one a page


def test_dashboard_run_page_draws_the_dag_journal_and_explanation(
    reader: FlaskClient, seeded: Seeded
) -> None:
    html = _page(reader, f"/run?id={seeded.order_run}")
    assert "<svg" in html
    for step in ("fetch", "approve", "join"):
        assert f"<title>{step}: " in html
    assert 'class="node succeeded"' in html
    assert 'class="node waiting"' in html
    db = reader.application.extensions["quick"].db
    first_line = str(workflow.explain_run(db, seeded.order_run)).split("\n")[0]
    assert first_line.replace("'", "&#39;") in html
    assert "run_started" in html or "started" in html
    flaky = _page(reader, f"/run?id={seeded.flaky_run}")
    assert 'class="node failed"' in flaky
    assert "kaboom" in flaky


def test_dashboard_actions_are_403_without_allow_actions(
    reader: FlaskClient, seeded: Seeded
) -> None:
    for url in ("/dead/requeue", "/dead/purge"):
        response = reader.post(url, data={"queue": "tenant-1", "job": seeded.dead})
        assert response.status_code == 403
    assert quick.list_dead(reader.application.extensions["quick"].db, "tenant-1")


def test_dashboard_actions_reject_a_missing_or_wrong_csrf_token(
    operator: FlaskClient, seeded: Seeded, store: Database
) -> None:
    _token(operator, "/dead?queue=tenant-1")  # a session exists; the token is not sent
    for token in (None, "forged"):
        data = {"queue": "tenant-1", "job": seeded.dead}
        if token:
            data["csrf_token"] = token
        response = operator.post("/dead/requeue", data=data)
        assert response.status_code == 400
        assert "CSRF" in response.get_data(as_text=True)
    assert [d.job_id for d in quick.list_dead(store, "tenant-1")] == [seeded.dead]
    assert operator.get("/dead/requeue").status_code == 405


def test_dashboard_requeue_and_purge_one_dead_letter(
    operator: FlaskClient, seeded: Seeded, store: Database
) -> None:
    page = _page(operator, "/dead?queue=tenant-1")
    assert "Requeue all" in page
    assert "Purge all" in page
    token = _token(operator, "/dead?queue=tenant-1")
    data = {"csrf_token": token, "queue": "tenant-1", "job": seeded.dead}
    response = operator.post("/dead/requeue", data=data, follow_redirects=True)
    assert response.status_code == 200
    assert f"requeued {seeded.dead}" in response.get_data(as_text=True)
    assert quick.list_dead(store, "tenant-1") == []
    assert quick.job_state(store, seeded.dead) is quick.JobState.READY
    other = dead_letter(store, "solo", "x")
    data = {"csrf_token": token, "queue": "solo", "job": other}
    response = operator.post("/dead/purge", data=data, follow_redirects=True)
    assert f"purged {other}" in response.get_data(as_text=True)
    assert quick.list_dead(store, "solo") == []


def test_dashboard_requeue_and_purge_all_of_a_queue(
    operator: FlaskClient, seeded: Seeded, store: Database
) -> None:
    for i in range(3):
        dead_letter(store, "bulk", {"i": i})
    token = _token(operator, "/dead?queue=bulk")
    response = operator.post("/dead/requeue", data={"csrf_token": token, "queue": "bulk"})
    assert response.status_code == 303
    assert quick.list_dead(store, "bulk") == []
    assert quick.queue_counts(store, "bulk")["ready"] == 3
    for i in range(2):
        dead_letter(store, "bulk2", {"i": i})
    refused = operator.post("/dead/purge", data={"csrf_token": token, "queue": "bulk2"})
    assert refused.status_code == 400  # the confirm box was not ticked
    data = {"csrf_token": token, "queue": "bulk2", "confirm": "yes"}
    assert operator.post("/dead/purge", data=data).status_code == 303
    assert quick.list_dead(store, "bulk2") == []
    rotten = operator.post(
        "/dead/requeue", data={"csrf_token": token, "queue": "tenant-rot"}, follow_redirects=True
    )
    assert "could not be" in rotten.get_data(as_text=True)


def test_dashboard_refuses_foreign_host_headers_on_loopback(store: Database) -> None:
    client = create_app(store).test_client()
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "127.0.0.1:8900"}).status_code == 200
    open_app = create_app(store, host="0.0.0.0").test_client()
    assert open_app.get("/", headers={"Host": "dash.example"}).status_code == 200


def test_dashboard_command_reports_a_port_in_use(tmp_path: Path) -> None:
    import socket

    from click.testing import CliRunner

    from quick.cli import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        url = f"sqlite:///{tmp_path / 'q.db'}"
        quick.open(url).close()  # the dashboard refuses a store that does not exist
        result = CliRunner().invoke(cli, ["--db", url, "dashboard", "--port", port])
    assert result.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.output


def test_dashboard_job_page_shows_a_running_jobs_progress_escaped_and_its_cancel(
    store: Database,
) -> None:
    from quick.jobs import now_ms
    from quick.leases import heartbeat_all
    from quick.progress import Progress

    job_id = quick.enqueue(store, "tenant-p", "report", None)
    (claim,) = quick.claim(store, "tenant-p", "worker-1")
    text = "<b>page</b> 3"
    progress = Progress(fraction=0.3, text=text, at_ms=now_ms())
    store.transact(heartbeat_all, [claim], 30_000, now_ms(), [progress])
    quick.cancel(store, job_id)
    html = _page(_client(store, allow_actions=False), f"/job?queue=tenant-p&id={job_id}")
    assert '<progress max="1" value="0.3">' in html
    assert "30% &lt;b&gt;page&lt;/b&gt; 3" in html
    assert text not in html
    assert "its worker stops it, then it ends cancelled" in html
