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
from keyspace.errors import EngineUnavailable, StorageError
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
    watch = _Watch(FAKE_FDB, FakeWatchFuture(code))
    assert watch.wait(1) is True
    assert watch.failed is True  # so the waiter pauses before looking again


def test_fdb_watch_cancelled_by_us_returns_false() -> None:
    watch = _Watch(FAKE_FDB, FakeWatchFuture(1101))
    watch.cancel()
    assert watch.wait(1) is False
    assert watch.failed is False


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


def test_fdb_binding_newer_than_an_old_library_asks_for_the_pinned_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _fake_binding(monkeypatch, binding_api=730, library_api=710)
    message = explain_load_failure(fake, 730, RuntimeError("api_version_not_supported"))
    assert "api_version_not_supported (2203)" in message
    assert "FoundationDB 7.3 client package" in message
    assert "7.1" not in message


# -- per-transaction options and on_error, through a fake binding ----------------------


class FakeOptions:
    def __init__(self, calls: list[tuple[str, int]]) -> None:
        self._calls = calls

    def __getattr__(self, name: str) -> Callable[[int], None]:
        return lambda value: self._calls.append((name, value))


class FakeFuture:
    def __init__(self, error: int | None = None, value: Any = 1) -> None:
        self.error = error
        self.value = value

    def wait(self) -> Any:
        if self.error is not None:
            raise FakeFDBError(self.error)
        return self.value


class FakeOptionsTransaction:
    """A binding transaction that records its options; ``on_error`` fails with ``fail_with``."""

    def __init__(self) -> None:
        self.options_set: list[tuple[str, int]] = []
        self.options = FakeOptions(self.options_set)
        self.snapshot = self
        self.fail_with: int | None = None

    def get_read_version(self) -> FakeFuture:
        return FakeFuture()

    def on_error(self, error: FakeFDBError) -> FakeFuture:
        return FakeFuture(self.fail_with)

    def reset(self) -> None:
        self.options_set.clear()  # FoundationDB's reset drops per-transaction options


class FakeOpenedDatabase:
    def __init__(self) -> None:
        self.options_set: list[tuple[str, int]] = []
        self.options = FakeOptions(self.options_set)
        self.transactions: list[FakeOptionsTransaction] = []

    def create_transaction(self) -> FakeOptionsTransaction:
        self.transactions.append(FakeOptionsTransaction())
        return self.transactions[-1]


def _fake_cluster(monkeypatch: pytest.MonkeyPatch) -> FakeOpenedDatabase:
    opened = FakeOpenedDatabase()
    fake = types.ModuleType("fdb")
    fake.api_version = lambda version: None  # type: ignore[attr-defined]
    fake.open = lambda cluster_file: opened  # type: ignore[attr-defined]
    fake.FDBError = FakeFDBError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fdb", fake)
    return opened


def test_fdb_timeout_and_retry_limit_are_set_on_every_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = _fake_cluster(monkeypatch)
    db = fdb_engine.open_fdb(None, "fdb://", timeout_ms=1234, retry_limit=7)
    assert opened.options_set == []  # no database-wide defaults: the binding shares them
    tr = db.create_transaction()
    binding = opened.transactions[-1]
    expected = [("set_timeout", 1234), ("set_retry_limit", 7)]
    assert binding.options_set == expected
    tr.reset()
    assert binding.options_set == expected  # set again after reset, which drops them


def test_fdb_on_error_that_times_out_reports_1031(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = _fake_cluster(monkeypatch)
    tr = fdb_engine.open_fdb(None, "fdb://").create_transaction()
    binding = opened.transactions[-1]
    conflict = StorageError(1020)
    binding.fail_with = 1031
    with pytest.raises(StorageError) as caught:
        tr.on_error(conflict)
    assert caught.value.code == 1031
    binding.fail_with = 1020  # not retried any more (the retry limit): the error itself
    with pytest.raises(StorageError) as caught:
        tr.on_error(conflict)
    assert caught.value is conflict


def test_fdb_watch_of_a_system_or_oversized_key_is_refused_before_the_binding() -> None:
    binding = FakeBindingTransaction()
    tr = FdbTransaction(FAKE_FDB, binding)
    for key, code in ((b"\xff", 2004), (b"k" * 10_001, 2102)):
        with pytest.raises(StorageError) as caught:
            tr.watch(key)
        assert caught.value.code == code
    assert binding.calls == []
