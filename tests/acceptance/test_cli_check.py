"""The CLI end to end: ``check`` and ``inspect keyspace`` (in-process and as processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from quick.cli import cli
from tests.fdb_client import CLIENT_LIBRARY_PRESENT


def test_cli_check_round_trips_on_the_embedded_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    result = CliRunner().invoke(cli, ["--db", url, "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["steps"]["read"].startswith("k3=b'value 3', 10 keys in range, counter=42")
    assert report["steps"]["clear"] == "0 keys left under the scratch prefix"


def test_cli_bad_url_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", "mysql://x", "check"])
    assert result.exit_code == 2
    assert "unknown database scheme 'mysql'" in result.output
    assert "Traceback" not in result.output


def test_cli_runs_as_a_module_and_reads_quick_db(tmp_path: Path) -> None:
    env = {"QUICK_DB": f"sqlite:///{tmp_path / 'q.db'}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "quick", "check"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "ok: 3 transactions" in done.stdout
    assert (tmp_path / "q.db").exists()
    listed = subprocess.run(
        [sys.executable, "-m", "quick", "inspect", "keyspace"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert listed.returncode == 0
    assert listed.stdout.strip() == "(no quick keys)"


@pytest.mark.skipif(
    CLIENT_LIBRARY_PRESENT, reason="libfdb_c is installed here, so its absence cannot be shown"
)
def test_cli_fdb_without_client_library_exits_3(tmp_path: Path) -> None:
    cluster = tmp_path / "fdb.cluster"
    cluster.write_text("docker:docker@127.0.0.1:4500\n")
    result = CliRunner().invoke(cli, ["--db", f"fdb://{cluster}", "check"])
    assert result.exit_code == 3
    assert "libfdb_c" in result.output


def test_cli_check_and_inspect_show_the_namespace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}?namespace=billing"
    checked = CliRunner().invoke(cli, ["--db", url, "check"])
    assert checked.exit_code == 0, checked.output
    assert "namespace  billing" in checked.output
    as_json = CliRunner().invoke(cli, ["--db", url, "check", "--json"])
    assert json.loads(as_json.output)["namespace"] == "billing"
    plain = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'q.db'}", "check"])
    assert "namespace  (default)" in plain.output
    listed = CliRunner().invoke(cli, ["--db", url, "inspect", "keyspace"])
    assert listed.output.splitlines() == ["namespace billing", "(no quick keys)"]
