"""The fdb engine: a thin adapter over the official FoundationDB binding.

Each protocol method maps onto one binding call and waits for its future; the binding's
``FDBError`` becomes :class:`~keyspace.errors.StorageError` with the same code, the
original on ``__cause__``. Limits, conflicts, versionstamps and retry delays are
FoundationDB's own. Nothing here leaks above ``keyspace``.

Needs ``libfdb_c`` (the FoundationDB client package) at run time; ``pip install
foundationdb`` ships only the Python half.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from keyspace.errors import EngineUnavailable, StorageError
from keyspace.protocol import KeyValue
from keyspace.retry import run_transaction

__all__ = ["FdbDatabase", "open_fdb", "API_VERSION"]

T = TypeVar("T")

#: The API version selected unless ``QUICK_FDB_API_VERSION`` says otherwise (7.1 clients and newer).
API_VERSION = 710
_PROBE_TIMEOUT_MS = 5000


def _load() -> Any:
    """Import the binding and select the API version, naming the fix when it cannot."""
    try:
        import fdb
    except ImportError as error:  # pragma: no cover - foundationdb is a dependency
        raise EngineUnavailable("the fdb engine needs `pip install foundationdb`") from error
    version = int(os.environ.get("QUICK_FDB_API_VERSION", API_VERSION))
    try:
        fdb.api_version(version)
    except Exception as error:  # the binding raises a bare Exception for a missing library
        raise EngineUnavailable(
            f"the fdb engine cannot load the FoundationDB client library libfdb_c ({error}). "
            "Install the FoundationDB client package for your platform (it provides "
            "libfdb_c), or use the embedded engine with a sqlite:///path URL."
        ) from error
    return fdb


def _wrap(fdb: Any, fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except fdb.FDBError as error:
        raise StorageError(error.code, error.description) from error


class _Reads:
    """Reads through a binding transaction or its snapshot view."""

    def __init__(self, fdb: Any, view: Any) -> None:
        self._fdb = fdb
        self._view = view

    def get(self, key: bytes) -> bytes | None:
        def run() -> bytes | None:
            value: bytes | None = self._view.get(key).value
            return value

        return _wrap(self._fdb, run)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        def run() -> list[KeyValue]:
            mode = self._fdb.StreamingMode.want_all
            rows = self._view.get_range(begin, end, limit, reverse, mode)
            return [(bytes(kv.key), bytes(kv.value)) for kv in rows]

        return _wrap(self._fdb, run)

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        def run() -> list[KeyValue]:
            mode = self._fdb.StreamingMode.want_all
            rows = self._view.get_range_startswith(prefix, limit, reverse, mode)
            return [(bytes(kv.key), bytes(kv.value)) for kv in rows]

        return _wrap(self._fdb, run)


class _Versionstamp:
    def __init__(self, fdb: Any, future: Any) -> None:
        self._fdb = fdb
        self._future = future

    def wait(self) -> bytes:
        def run() -> bytes:
            value: bytes = self._future.value
            return value

        return _wrap(self._fdb, run)


class _Watch:
    """An FDB watch future behind :class:`keyspace.protocol.Watch`."""

    def __init__(self, fdb: Any, future: Any) -> None:
        self._fdb = fdb
        self._future = future
        self._ready = threading.Event()
        future.on_ready(lambda _: self._ready.set())

    def wait(self, timeout: float | None = None) -> bool:
        if not self._ready.wait(timeout):
            return False
        try:
            self._future.wait()
        except self._fdb.FDBError as error:
            if error.code == 1101:  # operation_cancelled
                return False
            raise StorageError(error.code, error.description) from error
        return True

    def cancel(self) -> None:
        self._future.cancel()


class FdbTransaction(_Reads):
    """A binding transaction behind the quick protocol."""

    def __init__(self, fdb: Any, tr: Any) -> None:
        super().__init__(fdb, tr)
        self._tr = tr
        self.snapshot = _Reads(fdb, tr.snapshot)

    def _do(self, name: str, *args: Any) -> None:
        _wrap(self._fdb, getattr(self._tr, name), *args)

    def set(self, key: bytes, value: bytes) -> None:
        self._do("set", key, value)

    def clear(self, key: bytes) -> None:
        self._do("clear", key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._do("clear_range", begin, end)

    def clear_range_startswith(self, prefix: bytes) -> None:
        self._do("clear_range_startswith", prefix)

    def add(self, key: bytes, param: bytes) -> None:
        self._do("add", key, param)

    def bit_and(self, key: bytes, param: bytes) -> None:
        self._do("bit_and", key, param)

    def bit_or(self, key: bytes, param: bytes) -> None:
        self._do("bit_or", key, param)

    def bit_xor(self, key: bytes, param: bytes) -> None:
        self._do("bit_xor", key, param)

    def max(self, key: bytes, param: bytes) -> None:
        self._do("max", key, param)

    def min(self, key: bytes, param: bytes) -> None:
        self._do("min", key, param)

    def byte_max(self, key: bytes, param: bytes) -> None:
        self._do("byte_max", key, param)

    def byte_min(self, key: bytes, param: bytes) -> None:
        self._do("byte_min", key, param)

    def compare_and_clear(self, key: bytes, param: bytes) -> None:
        self._do("compare_and_clear", key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        self._do("set_versionstamped_key", key, value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._do("set_versionstamped_value", key, value)

    def get_versionstamp(self) -> _Versionstamp:
        return _Versionstamp(self._fdb, _wrap(self._fdb, self._tr.get_versionstamp))

    def watch(self, key: bytes) -> _Watch:
        return _Watch(self._fdb, _wrap(self._fdb, self._tr.watch, key))

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._do("add_read_conflict_range", begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        self._do("add_read_conflict_key", key)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._do("add_write_conflict_range", begin, end)

    def add_write_conflict_key(self, key: bytes) -> None:
        self._do("add_write_conflict_key", key)

    def get_read_version(self) -> int:
        return _wrap(self._fdb, lambda: int(self._tr.get_read_version().wait()))

    def get_committed_version(self) -> int:
        return _wrap(self._fdb, lambda: int(self._tr.get_committed_version()))

    def commit(self) -> None:
        _wrap(self._fdb, lambda: self._tr.commit().wait())

    def on_error(self, error: BaseException) -> None:
        if not isinstance(error, StorageError):
            raise error
        cause = error.__cause__
        if not isinstance(cause, self._fdb.FDBError):
            cause = self._fdb.FDBError(error.code)
        try:
            self._tr.on_error(cause).wait()
        except self._fdb.FDBError:
            raise error from None

    def reset(self) -> None:
        self._tr.reset()

    def cancel(self) -> None:
        self._tr.cancel()


class FdbDatabase:
    """A FoundationDB cluster behind the quick protocol."""

    def __init__(self, fdb: Any, db: Any, url: str) -> None:
        self._fdb = fdb
        self._db = db
        self.url = url

    def create_transaction(self) -> FdbTransaction:
        return FdbTransaction(self._fdb, _wrap(self._fdb, self._db.create_transaction))

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return run_transaction(self, fn, *args, **kwargs)

    def close(self) -> None:
        """Nothing to release: the binding keeps one network thread per process."""

    def __enter__(self) -> FdbDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FdbDatabase({self.url!r})"


def open_fdb(cluster_file: str | None, url: str) -> FdbDatabase:
    """Connect to the cluster in ``cluster_file`` (None = the default) and check it answers."""
    if cluster_file is not None and not os.path.exists(cluster_file):
        raise EngineUnavailable(f"cluster file {cluster_file} does not exist")
    fdb = _load()
    try:
        db = fdb.open(cluster_file)
    except fdb.FDBError as error:
        raise EngineUnavailable(
            f"cannot open the FoundationDB cluster file {cluster_file or '(default)'}: "
            f"{error.description} ({error.code})"
        ) from error
    probe = db.create_transaction()
    probe.options.set_timeout(_PROBE_TIMEOUT_MS)
    try:
        probe.get_read_version().wait()
    except fdb.FDBError as error:
        raise EngineUnavailable(
            f"the FoundationDB cluster in {cluster_file or 'the default cluster file'} did not "
            f"answer within {_PROBE_TIMEOUT_MS // 1000} s ({error.description}); check that it "
            "is running and configured (`fdbcli --exec status`)"
        ) from error
    return FdbDatabase(fdb, db, url)
