"""The dashboard answers only the Host names it is allowed (so a DNS-rebinding page can
neither read nor act), and refuses a POST whose Origin or Referer names another host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.extras import require_dashboard

require_dashboard()

from click.testing import CliRunner
from flask.testing import FlaskClient

import quick
from keyspace.protocol import Database
from quick.cli import cli
from quick.dashboard import create_app, trusted_hosts
from quick.dashboard.app import host_allowed
from tests.acceptance.dashboard_store import dead_letter

DASH = "http://dash.example:8900"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    db = quick.open(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        dead_letter(db, "tenant-1", {"n": 1})
        yield db
    finally:
        db.close()


def _token(client: FlaskClient, base_url: str) -> str:
    page = client.get("/dead?queue=tenant-1", base_url=base_url)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found
    return found.group(1)


def _requeue(client: FlaskClient, base_url: str, token: str, **headers: str) -> int:
    data = {"csrf_token": token, "queue": "tenant-1"}
    response = client.post("/dead/requeue", data=data, base_url=base_url, headers=headers)
    return response.status_code


def test_dashboard_hosts_trusted_names_by_address() -> None:
    assert trusted_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "::1", "[::1]"]
    assert "dash.example" in (trusted_hosts("::1", ["dash.example"]) or [])
    assert trusted_hosts("0.0.0.0", ["dash.example"], allow_actions=True) == ["dash.example"]
    assert trusted_hosts("0.0.0.0") is None  # read-only: any host, as before
    with pytest.raises(ValueError, match="--allowed-host"):
        trusted_hosts("0.0.0.0", allow_actions=True)


def test_dashboard_hosts_actions_off_loopback_need_an_allow_list(store: Database) -> None:
    with pytest.raises(ValueError, match="--allowed-host"):
        create_app(store, host="0.0.0.0", allow_actions=True)


def test_dashboard_hosts_off_loopback_answers_only_allowed_hosts(store: Database) -> None:
    app = create_app(store, host="0.0.0.0", allow_actions=True, allowed_hosts=["dash.example"])
    client = app.test_client()
    assert client.get("/", base_url=DASH).status_code == 200
    assert client.get("/", base_url="http://rebound.evil:8900").status_code == 400
    assert client.get("/", base_url="http://127.0.0.1:8900").status_code == 400


def test_dashboard_hosts_post_from_another_origin_is_refused(store: Database) -> None:
    app = create_app(store, host="0.0.0.0", allow_actions=True, allowed_hosts=["dash.example"])
    client = app.test_client()
    token = _token(client, DASH)
    assert _requeue(client, DASH, token, Origin="http://evil.example") == 403
    assert _requeue(client, DASH, token, Origin="null") == 403
    assert _requeue(client, DASH, token, Referer="http://evil.example/attack") == 403
    assert quick.list_dead(store, "tenant-1")  # nothing was requeued
    assert _requeue(client, DASH, token, Origin=DASH) == 303
    assert quick.list_dead(store, "tenant-1") == []


def test_dashboard_hosts_post_on_loopback_checks_origin_too(store: Database) -> None:
    client = create_app(store, allow_actions=True).test_client()
    base = "http://127.0.0.1:8900"
    token = _token(client, base)
    assert _requeue(client, base, token, Origin="http://evil.example:8900") == 403
    assert _requeue(client, base, token, Referer=f"{base}/dead?queue=tenant-1") == 303


def test_dashboard_hosts_pages_let_browsers_send_their_origin(store: Database) -> None:
    """With ``no-referrer`` a browser posts ``Origin: null``, which the check must refuse;
    ``same-origin`` sends our own origin and nothing to other sites."""
    response = create_app(store).test_client().get("/")
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_dashboard_hosts_command_refuses_actions_off_loopback_without_names(
    store: Database,
) -> None:
    result = CliRunner().invoke(
        cli, ["--db", store.url, "dashboard", "--host", "0.0.0.0", "--allow-actions"]
    )
    assert result.exit_code == 2
    assert "--allowed-host" in result.output


def test_dashboard_hosts_ipv6_loopback_and_subdomains_match(store: Database) -> None:
    assert host_allowed("[::1]:8900", trusted_hosts("::1") or [])
    assert host_allowed("Dash.Example:80", ["dash.example"])
    assert host_allowed("a.dash.example", [".dash.example"])
    assert not host_allowed("evildash.example", [".dash.example"])
    assert not host_allowed("", ["dash.example"])
    client = create_app(store, host="::1").test_client()
    assert client.get("/", base_url="http://[::1]:8900").status_code == 200
    assert client.get("/", base_url="http://evil.example:8900").status_code == 400
