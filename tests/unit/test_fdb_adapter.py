"""The fdb adapter without a cluster: argument checks, watch errors, load failures.

The binding is replaced by small fakes, so what is tested is the adapter's own code:
that it refuses bad arguments before the binding sees them (with the sqlite engine's
words), that a failed watch reads as "look again", and that a binding newer than the
client library is told apart from a missing library.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import keyspace
from keyspace import fdb_engine
from keyspace.errors import EngineUnavailable
from keyspace.fdb_engine import FdbTransaction, _Watch, explain_load_failure


class FakeFDBError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
        self.description = f"error {code}"


class FakeBindingTransaction:
    """Records calls; the adapter must not reach it with a bad argument."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.snapshot = self

    def __getattr__(self, name: str) -> Callable[..., None]:
        def call(*args: Any) -> None:
            self.calls.append(name)

        return call


FAKE_FDB = types.SimpleNamespace(FDBError=FakeFDBError)

CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("get", ("k",)),
    ("get_range", ("a", b"b")),
    ("get_range", (b"a", "b")),
    ("get_range_startswith", ("a",)),
    ("set", ("k", b"v")),
    ("set", (b"k", "v")),
    ("clear", ("k",)),
    ("clear_range", ("a", b"b")),
    ("clear_range_startswith", ("a",)),
    ("add", ("k", b"\x01")),
    ("add", (b"k", 1)),
    ("compare_and_clear", (b"k", "v")),
    ("set_versionstamped_key", ("k" * 14, b"v")),
    ("set_versionstamped_value", (b"k", "v" * 14)),
    ("watch", ("k",)),
    ("add_read_conflict_range", ("a", b"b")),
    ("add_read_conflict_key", ("k",)),
    ("add_write_conflict_range", (b"a", "b")),
    ("add_write_conflict_key", (1,)),
    ("get_many", (["k"],)),
]


@pytest.mark.parametrize(("method", "args"), CALLS, ids=[f"{m}{a!r}" for m, a in CALLS])
def test_fdb_adapter_type_errors_match_the_sqlite_engine(
    tmp_path: Path, method: str, args: tuple[Any, ...]
) -> None:
    with keyspace.open(f"sqlite:///{tmp_path / 't.db'}") as db, pytest.raises(TypeError) as error:
        getattr(db.create_transaction(), method)(*args)
    sqlite_text = str(error.value)
    binding = FakeBindingTransaction()
    with pytest.raises(TypeError) as fdb_error:
        getattr(FdbTransaction(FAKE_FDB, binding), method)(*args)
    assert str(fdb_error.value) == sqlite_text
    assert binding.calls == []


class FakeWatchFuture:
    def __init__(self, error: int | None) -> None:
        self.error = error
        self.cancelled = False

    def on_ready(self, callback: Callable[[Any], None]) -> None:
        callback(self)

    def wait(self) -> None:
        if self.error is not None:
            raise FakeFDBError(self.error)

    def cancel(self) -> None:
        self.cancelled = True


@pytest.mark.parametrize("code", [1007, 1009, 1020, 1021, 1025, 1029, 1032, 1101, 4100])
def test_fdb_watch_error_reads_as_fired(code: int) -> None:
    assert _Watch(FAKE_FDB, FakeWatchFuture(code)).wait(1) is True


def test_fdb_watch_cancelled_by_us_returns_false() -> None:
    watch = _Watch(FAKE_FDB, FakeWatchFuture(1101))
    watch.cancel()
    assert watch.wait(1) is False


def _fake_binding(
    monkeypatch: pytest.MonkeyPatch, binding_api: int, library_api: int | None
) -> types.ModuleType:
    fake = types.ModuleType("fdb")
    fake.LATEST_API_VERSION = binding_api  # type: ignore[attr-defined]

    def api_version(version: int) -> None:
        if library_api is None:
            raise Exception("Unable to locate the FoundationDB API shared library!")
        raise RuntimeError("This version of the FoundationDB Python binding is not supported")

    fake.api_version = api_version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fdb", fake)
    if library_api is None:
        monkeypatch.delitem(sys.modules, "fdb.impl", raising=False)
    else:
        impl = types.ModuleType("fdb.impl")
        capi = types.SimpleNamespace(fdb_get_max_api_version=lambda: library_api)
        impl._capi = capi  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "fdb.impl", impl)
    return fake


def test_fdb_binding_newer_than_library_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_binding(monkeypatch, binding_api=800, library_api=730)
    with pytest.raises(EngineUnavailable) as caught:
        fdb_engine._load()
    message = str(caught.value)
    assert "api_version_not_supported (2203)" in message
    assert "newer than the installed client library" in message
    assert "foundationdb==7.3.*" in message
    assert "cannot load" not in message


def test_fdb_missing_library_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_binding(monkeypatch, binding_api=730, library_api=None)
    with pytest.raises(EngineUnavailable, match="cannot load the FoundationDB client library"):
        fdb_engine._load()


def test_fdb_requested_api_version_beyond_the_library_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _fake_binding(monkeypatch, binding_api=730, library_api=730)
    message = explain_load_failure(fake, 740, RuntimeError("Latest known FDB API version is 730"))
    assert "QUICK_FDB_API_VERSION" in message
    assert "at most 730" in message
