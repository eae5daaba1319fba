"""The CLI never shows a traceback: each class of crash the fuzz found is a
message and a documented exit code here, and a refused call writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import quick
from keyspace.layout import ROOT, queue_keys
from quick.cli import cli
from quick.cli.common import MAX_DELAY_SECONDS


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{str(args)[:300]} raised {result.exception!r}:\n{result.output[-2000:]}"
    )
    assert "Traceback" not in result.output
    return result


def _keys(url: str) -> list[tuple[bytes, bytes]]:
    with quick.open(url) as db:
        return db.transact(lambda tr: tr.get_range(*ROOT.range()))


# -- --db after the subcommand ---------------------------------------------------------------


def test_cli_db_is_accepted_after_the_subcommand(url: str, tmp_path: Path) -> None:
    job = _invoke("enqueue", "--db", url, "q", "t").output.strip()
    assert json.loads(_invoke("jobs", "q", "--json", "--db", url).output)[0]["job_id"] == job
    assert _invoke("dlq", "list", "--db", url).output == "(no dead letters)\n"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    # After the subcommand wins over before it and over $QUICK_DB; $QUICK_DB never
    # overrides a --db written before the subcommand.
    assert _invoke("--db", other, "queues", "--db", url, "--json").output.count('"q"') == 1
    assert _invoke("queues", "--json", env={"QUICK_DB": url}).output.count('"q"') == 1
    assert _invoke("--db", other, "queues", env={"QUICK_DB": url}).output == "(no queues)\n"


def test_cli_worker_takes_db_after_its_name() -> None:
    result = _invoke("worker", "--db", "mysql://x", "--app", "tests.acceptance.jobs_app:app")
    assert result.exit_code == 2
    assert "unknown database scheme 'mysql'" in result.output
    assert "--db" in _invoke("worker", "--help").output


# -- stores that cannot be opened ------------------------------------------------------------


def _unusable_stores(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "not-a-db.txt").write_bytes(b"hello, this is not SQLite\n" * 10)
    return {
        "missing directory": tmp_path / "missing" / "q.db",
        "directory": tmp_path / "a-directory",
        "not a database": tmp_path / "not-a-db.txt",
    }


@pytest.mark.parametrize("case", ["missing directory", "directory", "not a database"])
def test_cli_unusable_store_exits_3_naming_the_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    path = _unusable_stores(tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(path, tmp_path)
    for args in (["queues"], ["enqueue", "q", "t"], ["inspect", "keyspace"]):
        result = _invoke("--db", f"sqlite:///{relative}", *args)
        assert result.exit_code == 3, result.output
        assert str(path) in result.output


@pytest.mark.parametrize("case", ["directory", "not a database"])
def test_cli_unusable_store_leaves_no_lock_file(tmp_path: Path, case: str) -> None:
    path = _unusable_stores(tmp_path)[case]
    assert _invoke("--db", f"sqlite:///{path}", "queues").exit_code == 3
    assert not Path(f"{path}.lock").exists()


# -- ids, payloads, limits and delays --------------------------------------------------------

BAD = "caf\udce9"  # b"caf\xe9" from argv: latin-1, not UTF-8


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", BAD],
        ["runs", "show", BAD],
        ["runs", "explain", BAD],
        ["runs", "cancel", BAD],
        ["signal", BAD, "step"],
        ["dlq", "requeue", "q", BAD],
        ["dlq", "list", "--queue", BAD],
        ["cron", "remove", BAD],
        ["enqueue", BAD, "t"],
    ],
)
def test_cli_non_utf8_ids_are_usage_mistakes(url: str, args: list[str]) -> None:
    result = _invoke("--db", url, *args)
    assert result.exit_code == 2, result.output
    assert "is not valid UTF-8" in result.output


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "--payload is nested too deeply"),
        ("9" * 5000, "--payload is not valid JSON"),
        (str(2**70), "payload"),
    ],
)
def test_cli_unstorable_payloads_are_usage_mistakes(url: str, payload: str, words: str) -> None:
    for args in (["enqueue", "q", "t"], ["cron", "add", "c", "* * * * *", "q", "t"]):
        result = _invoke("--db", url, *args, "--payload", payload)
        assert result.exit_code == 2, result.output
        assert words in result.output
    assert _keys(url) == []


@pytest.mark.parametrize("limit", ["0", "-1", str(2**63)])
@pytest.mark.parametrize("command", [["jobs", "q"], ["runs", "list"], ["inspect", "keyspace"]])
def test_cli_limit_out_of_range_is_a_usage_mistake(
    url: str, command: list[str], limit: str
) -> None:
    _invoke("--db", url, "enqueue", "q", "t")
    result = _invoke("--db", url, *command, "--limit", limit)
    assert result.exit_code == 2, result.output
    assert "--limit" in result.output


@pytest.mark.parametrize("delay", ["1e16", "4e9", "inf", "nan", "-1"])
def test_cli_delay_out_of_range_names_delay_not_the_payload(url: str, delay: str) -> None:
    result = _invoke("--db", url, "enqueue", "q", "t", "--payload", "{}", "--delay", delay)
    assert result.exit_code == 2, result.output
    assert "--delay" in result.output
    assert "payload" not in result.output.replace("--payload", "")
    assert _keys(url) == []
    far = _invoke("--db", url, "enqueue", "q", "t", "--delay", str(MAX_DELAY_SECONDS))
    assert far.exit_code == 0, far.output


def test_cli_inspect_keyspace_shows_out_of_range_times_in_keys(url: str) -> None:
    keys = queue_keys("q")
    with quick.open(url) as db:
        db.transact(lambda tr: tr.set(keys.scheduled(10**18, "far"), b""))
        db.transact(lambda tr: tr.set(keys.scheduled(-(10**18), "early"), b""))
    result = _invoke("--db", url, "inspect", "keyspace")
    assert result.exit_code == 0, result.output
    assert "vis_ms=1000000000000000000" in result.output
    assert "job_id='far'" in result.output
    assert "job_id='early'" in result.output
