"""Quiet surprises settled: ``quick dashboard`` never creates a store, a repeated URL
parameter is refused, ``--db ''`` is refused, and the metrics server binds loopback unless
told otherwise."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import keyspace
from quick.cli import cli
from tests.acceptance.processes import ROOT, worker_argv


def test_quiet_dashboard_refuses_a_missing_store_and_creates_nothing(tmp_path: Path) -> None:
    pytest.importorskip("flask", reason="needs the dashboard extra: pip install -e '.[dashboard]'")
    missing = tmp_path / "typo.db"
    with socket.socket() as taken:  # so that a dashboard that did start would stop at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        argv = ["--db", f"sqlite:///{missing}", "dashboard", "--port", port]
        result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 3, result.output
    assert f"no store at {missing}" in result.output
    assert not missing.exists()


@pytest.mark.parametrize(
    "query", ["namespace=a&namespace=b", "timeout=5&timeout=6", "sync=full&sync=full"]
)
def test_quiet_a_repeated_url_parameter_is_refused_naming_it(tmp_path: Path, query: str) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}?{query}"
    name = query.split("=")[0]
    with pytest.raises(keyspace.InvalidURL, match=f"given more than once: {name}"):
        keyspace.open(url)
    result = CliRunner().invoke(cli, ["--db", url, "queues"])
    assert result.exit_code == 2
    assert f"given more than once: {name}" in result.output
    assert not (tmp_path / "q.db").exists()


@pytest.mark.parametrize(
    "argv", [["--db", "", "queues"], ["queues", "--db", ""], ["--db", "  ", "queues"]]
)
def test_quiet_an_empty_db_option_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    assert "--db is empty" in result.output
    assert os.listdir(tmp_path) == []  # no ./quick.db fell back into being
    with pytest.raises(keyspace.InvalidURL, match="empty"):
        keyspace.open("")


def test_quiet_metrics_host_defaults_to_loopback(tmp_path: Path) -> None:
    """Without --metrics-host the worker binds 127.0.0.1: a port taken there is named so
    (a 0.0.0.0 bind would name 0.0.0.0)."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = worker_argv(url, "tests.acceptance.jobs_app:app", "--metrics-port", str(port))
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"--metrics-port {port}: cannot serve on 127.0.0.1" in done.stderr.decode()
