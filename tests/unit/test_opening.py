"""``keyspace.open``: URLs, defaults and the errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

import keyspace
from keyspace import EngineUnavailable, InvalidURL
from tests.fdb_client import CLIENT_LIBRARY_PRESENT


def test_open_without_url_uses_quick_db_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QUICK_DB", raising=False)
    with keyspace.open() as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))
    assert (tmp_path / "quick.db").exists()
    monkeypatch.setenv("QUICK_DB", f"sqlite:///{tmp_path / 'env.db'}")
    with keyspace.open() as db:
        assert db.url.endswith("env.db")
    assert (tmp_path / "env.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unknown database scheme 'redis'"),
        ("quick.db", "unknown database scheme '(none)'"),
        ("sqlite://", "names no file"),
        ("sqlite://host/file.db", "three slashes"),
        ("sqlite:///x.db?sync=sometimes", "sync must be one of"),
        ("sqlite:///x.db?colour=blue", "unknown parameter"),
        ("sqlite:///x.db?retry_limit=many", "retry_limit must be an integer"),
    ],
)
def test_open_rejects_bad_urls_with_a_named_problem(
    url: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidURL, match=message.replace("(", r"\(").replace(")", r"\)")):
        keyspace.open(url)


def test_open_fdb_with_missing_cluster_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="does not exist"):
        keyspace.open(f"fdb://{tmp_path / 'nope.cluster'}")


@pytest.mark.skipif(
    CLIENT_LIBRARY_PRESENT, reason="libfdb_c is installed here, so its absence cannot be shown"
)
def test_open_fdb_without_client_library_names_the_fix(tmp_path: Path) -> None:
    cluster = tmp_path / "fdb.cluster"
    cluster.write_text("docker:docker@127.0.0.1:4500\n")
    with pytest.raises(EngineUnavailable, match="libfdb_c"):
        keyspace.open(f"fdb://{cluster}")


def test_open_sqlite_full_sync_is_accepted(tmp_path: Path) -> None:
    with keyspace.open(f"sqlite:///{tmp_path / 'x.db'}?sync=full&retry_limit=3") as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"


def test_open_sqlite_sync_off_is_accepted(tmp_path: Path) -> None:
    with keyspace.open(f"sqlite:///{tmp_path / 'x.db'}?sync=off") as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"
