"""``quick migrate`` refusing bad input (exit 2, changing nothing): an empty ``--to``, a
queue name the source does not have, and the source itself under another name; and its
probe of the destination, which must not read a key FoundationDB refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import keyspace
import quick
from keyspace.protocol import Database
from quick.cli import cli
from tests.acceptance.processes import ROOT
from tests.integration.seams import SeamDatabase, StrictSystemKeys


def _run(cwd: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "quick", *argv],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "QUICK_DB": ""},
        capture_output=True,
        timeout=60,
    )


def _everything(url: str) -> list[tuple[bytes, bytes]]:
    with quick.open(url) as db:
        return db.transact(lambda tr: tr.get_range(b"", b"\xff"))


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with quick.open(url) as db:
        quick.enqueue(db, "t1", "record", {"p": 1})
        quick.schedule(db, "tick", "*/5 * * * *", "t1", "record", None)
    return url


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to", ""], b"--to is empty"),
        (["--to", "   "], b"--to is empty"),
        (["--to", "sqlite:///{tmp}/dest.db", "t1", "nope"], b"no such queue on the source: 'nope'"),
        (["--to", "sqlite:///{tmp}/dest.db", ""], b"must not be empty"),
        (["--to", "sqlite:///{tmp}/link.db"], b"is the source store"),
        (["--to", "sqlite:///{tmp}/./source.db", "t1"], b"is the source store"),
    ],
)
def test_migrate_refuses_bad_input_with_exit_2_and_changes_nothing(
    tmp_path: Path, source: str, argv: list[str], message: bytes
) -> None:
    os.symlink(tmp_path / "source.db", tmp_path / "link.db")
    before = _everything(source)
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    result = _run(tmp_path, "--db", source, "migrate", *argv)
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.startswith(b"Error: ")
    assert message in result.stderr
    assert b"Traceback" not in result.stderr
    after = [(k, v) for k, v in _everything(source) if not k.endswith(b"meta\x00\x02id\x00")]
    assert after == before
    assert not (tmp_path / "quick.db").exists()
    assert not (tmp_path / "dest.db").exists() or _everything(f"sqlite:///{tmp_path}/dest.db") == []


def test_migrate_refuses_one_namespace_reached_through_a_symlink(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}?namespace=billing"
    with quick.open(source) as db:
        quick.enqueue(db, "t1", "record", {"p": 1})
    os.symlink(tmp_path / "source.db", tmp_path / "link.db")
    same = f"sqlite:///{tmp_path / 'link.db'}?namespace=billing"
    result = _run(tmp_path, "--db", source, "migrate", "--to", same)
    assert result.returncode == 2
    assert b"is the source store" in result.stderr
    other = f"sqlite:///{tmp_path / 'link.db'}?namespace=shipping"
    moved = _run(tmp_path, "--db", source, "migrate", "--to", other)
    assert moved.returncode == 0, moved.stderr.decode()
    assert b"1 job(s)" in moved.stdout


def test_migrate_probe_reads_no_system_key(
    tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The destination refuses point reads of ``0xff`` keys as a FoundationDB cluster does
    (``fdb://`` without a namespace reaches the cluster's keyspace unchanged)."""
    real_open = keyspace.open

    def strict_open(url: str | None = None) -> Database:
        return SeamDatabase(real_open(url), StrictSystemKeys)

    monkeypatch.setattr(keyspace, "open", strict_open)
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    result = CliRunner().invoke(cli, ["--db", source, "migrate", "--to", dest])
    assert result.exit_code == 0, result.output
    assert "1 job(s)" in result.output
