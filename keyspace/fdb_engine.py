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
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from keyspace.atomic import AtomicMethods, AtomicOp
from keyspace.errors import EngineUnavailable, StorageError
from keyspace.limits import (
    DEFAULT_RETRY_LIMIT,
    DEFAULT_TIMEOUT_MS,
    KEY_LIMIT,
    check_point_key,
    require_bytes,
)
from keyspace.protocol import KeyValue
from keyspace.retry import run_transaction
from keyspace.tuples import drop_six_finders

__all__ = ["FdbDatabase", "open_fdb", "API_VERSION", "explain_load_failure"]

T = TypeVar("T")

#: The API version selected unless ``QUICK_FDB_API_VERSION`` says otherwise: 7.3's, the
#: release line of the pinned binding (``foundationdb>=7.3,<7.4``) and of its ``libfdb_c``.
API_VERSION = 730
#: The binding release line quick is pinned to (pyproject.toml), for install hints.
BINDING_LINE = "7.3"
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
    except Exception as error:  # the binding raises bare Exception / RuntimeError
        raise EngineUnavailable(explain_load_failure(fdb, version, error)) from error
    finally:
        drop_six_finders()  # api_version imports more of the binding
    return fdb


def _library_max_api_version() -> int | None:
    """The newest API version the loaded ``libfdb_c`` supports; None when it did not load."""
    impl = sys.modules.get("fdb.impl")
    capi = getattr(impl, "_capi", None)
    if capi is None:
        return None
    try:
        return int(capi.fdb_get_max_api_version())
    except Exception:
        return None


def explain_load_failure(fdb: Any, requested: int, error: BaseException) -> str:
    """Why ``fdb.api_version(requested)`` failed, and the fix, in one message.

    Three causes look alike in the binding's bare exceptions: no ``libfdb_c`` at all;
    a binding newer than the library (FoundationDB error 2203 api_version_not_supported:
    a 7.3 binding passes header version 730 to a 7.1 library, an 8.x one 800 to a 7.3
    library); and an API version (``QUICK_FDB_API_VERSION``) newer than the library or
    the binding supports.
    """
    binding_api = int(getattr(fdb, "LATEST_API_VERSION", 0))
    library_api = _library_max_api_version()
    if library_api is None:
        return (
            f"the fdb engine cannot load the FoundationDB client library libfdb_c ({error}). "
            "Install the FoundationDB client package for your platform (it provides "
            "libfdb_c), or use the embedded engine with a sqlite:///path URL."
        )
    if binding_api > library_api:
        fix = (
            f"install the FoundationDB {BINDING_LINE} client package (libfdb_c {BINDING_LINE}), "
            f"the release quick's binding is pinned to"
            if library_api < API_VERSION
            else f"install the {BINDING_LINE} binding: "
            f"`pip install 'foundationdb=={BINDING_LINE}.*'`"
        )
        return (
            f"the FoundationDB Python binding (API {binding_api}) is newer than the installed "
            f"client library libfdb_c (API {library_api}): api_version_not_supported (2203). "
            f"To fix it, {fix}."
        )
    if requested > min(library_api, binding_api or requested):
        return (
            f"API version {requested} (QUICK_FDB_API_VERSION) is newer than this FoundationDB "
            f"client supports (library API {library_api}, binding API {binding_api}); "
            f"unset it or choose at most {min(library_api, binding_api or library_api)}."
        )
    return f"the FoundationDB client could not start at API version {requested}: {error}"


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
        require_bytes("key", key)

        def run() -> bytes | None:
            value: bytes | None = self._view.get(key).value
            return value

        return _wrap(self._fdb, run)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Issue every read, then wait for each: one round trip for all of them."""
        for key in keys:
            require_bytes("key", key)

        def run() -> list[bytes | None]:
            futures = [self._view.get(key) for key in keys]
            return [None if f.value is None else bytes(f.value) for f in futures]

        return _wrap(self._fdb, run)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        require_bytes("key", begin)
        require_bytes("key", end)

        def run() -> list[KeyValue]:
            mode = self._fdb.StreamingMode.want_all
            rows = self._view.get_range(begin, end, limit, reverse, mode)
            return [(bytes(kv.key), bytes(kv.value)) for kv in rows]

        return _wrap(self._fdb, run)

    def get_ranges(self, ranges: Sequence[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        """Issue every range read, then wait for each: one round trip for all of them (the
        binding's range object sends its first request when made)."""
        for begin, end, _ in ranges:
            require_bytes("key", begin)
            require_bytes("key", end)

        def run() -> list[list[KeyValue]]:
            mode = self._fdb.StreamingMode.want_all
            pending = [self._view.get_range(b, e, n, False, mode) for b, e, n in ranges]
            return [[(bytes(kv.key), bytes(kv.value)) for kv in rows] for rows in pending]

        return _wrap(self._fdb, run)

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        require_bytes("key", prefix)

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
    """An FDB watch future behind :class:`keyspace.protocol.Watch`.

    FoundationDB fails watches for many reasons that all mean "look again": the
    watching transaction's commit failed (1020, 1021, 1007, 1009), it was reset or
    destroyed (1025, 1101), the storage server dropped it (1029) or the client has too
    many (1032). :meth:`wait` reports every such failure as the watch firing, so the
    caller rescans; only our own :meth:`cancel` makes it return False.
    """

    def __init__(self, fdb: Any, future: Any) -> None:
        self._fdb = fdb
        self._future = future
        self._cancelled = False
        self.failed = False
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        future.on_ready(self._fire)  # the binding's one callback; listeners fan out from it

    def _fire(self, _: Any) -> None:
        with self._lock:
            self._ready.set()
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the watch fires, fails or is cancelled (on the binding's
        network thread, or at once when it already has): an event loop waits on it
        without holding a thread (:func:`quick.aio_waiting.await_watch`)."""
        with self._lock:
            if not self._ready.is_set():
                self._listeners.append(callback)
                return
        callback()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._ready.wait(timeout):
            return False
        if self._cancelled:
            return False
        try:
            self._future.wait()
        except self._fdb.FDBError:
            self.failed = not self._cancelled
            return self.failed
        return True

    def cancel(self) -> None:
        self._cancelled = True
        self._future.cancel()


class FdbTransaction(_Reads, AtomicMethods):
    """A binding transaction behind the quick protocol.

    ``options`` sets this transaction's options on the binding's (its ``timeout`` and
    ``retry_limit``), once now and again after every :meth:`reset`.
    """

    def __init__(self, fdb: Any, tr: Any, options: Callable[[Any], None] = lambda tr: None) -> None:
        super().__init__(fdb, tr)
        self._options = options
        options(tr)
        self._tr = tr
        self._reads = _Reads(fdb, tr)
        self.snapshot = _Reads(fdb, tr.snapshot)

    def _do(self, name: str, *args: Any) -> None:
        _wrap(self._fdb, getattr(self._tr, name), *args)

    def _keyed(self, name: str, key: bytes) -> None:
        require_bytes("key", key)
        self._do(name, key)

    def _keyed_value(self, name: str, key: bytes, value: bytes) -> None:
        require_bytes("key", key)
        require_bytes("value", value)
        self._do(name, key, value)

    def _ranged(self, name: str, begin: bytes, end: bytes) -> None:
        require_bytes("key", begin)
        require_bytes("key", end)
        self._do(name, begin, end)

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        """The values at ``keys``, all reads in flight at once."""
        return (self.snapshot if snapshot else self._reads).get_many(keys)

    def get_ranges(
        self, ranges: Sequence[tuple[bytes, bytes, int]], *, snapshot: bool = False
    ) -> list[list[KeyValue]]:
        """Forward range reads, all in flight at once."""
        return (self.snapshot if snapshot else self._reads).get_ranges(ranges)

    def set(self, key: bytes, value: bytes) -> None:
        self._keyed_value("set", key, value)

    def clear(self, key: bytes) -> None:
        self._keyed("clear", key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._ranged("clear_range", begin, end)

    def clear_range_startswith(self, prefix: bytes) -> None:
        self._keyed("clear_range_startswith", prefix)

    def atomic_op(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        self._keyed_value(op.value, key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        require_bytes("versionstamp template", key)
        require_bytes("value", value)
        self._do("set_versionstamped_key", key, value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        require_bytes("key", key)
        require_bytes("versionstamp template", value)
        self._do("set_versionstamped_value", key, value)

    def get_versionstamp(self) -> _Versionstamp:
        return _Versionstamp(self._fdb, _wrap(self._fdb, self._tr.get_versionstamp))

    def watch(self, key: bytes) -> _Watch:
        # FoundationDB fails the watch's future with these; every watch error reads as
        # "fired" (see _Watch), so refuse them here, as the sqlite engine does.
        check_point_key(key)
        if len(key) > KEY_LIMIT:
            raise StorageError(2102, f"watched key of {len(key)} bytes exceeds {KEY_LIMIT}")
        return _Watch(self._fdb, _wrap(self._fdb, self._tr.watch, key))

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._ranged("add_read_conflict_range", begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        self._keyed("add_read_conflict_key", key)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._ranged("add_write_conflict_range", begin, end)

    def add_write_conflict_key(self, key: bytes) -> None:
        self._keyed("add_write_conflict_key", key)

    def get_read_version(self) -> int:
        return _wrap(self._fdb, lambda: int(self._tr.get_read_version().wait()))

    def get_committed_version(self) -> int:
        return _wrap(self._fdb, lambda: int(self._tr.get_committed_version()))

    def commit(self) -> None:
        _wrap(self._fdb, lambda: self._tr.commit().wait())

    def on_error(self, error: BaseException) -> None:
        if not isinstance(error, StorageError):
            raise error
        self.finish_on_error(error, self.on_error_future(error))

    # -- the binding's futures, for callers that wait on them themselves ----------
    # An async caller starts an operation here, waits for the future through its
    # ``on_ready`` callback (quick.aio_waiting), then finishes it here without blocking.

    def read_future(self, key: bytes, *, snapshot: bool = False) -> Any:
        """The binding's future of a point read; :meth:`read_value` once it is ready."""
        require_bytes("key", key)
        return _wrap(self._fdb, (self._tr.snapshot if snapshot else self._tr).get, key)

    def read_value(self, future: Any) -> bytes | None:
        """The value a ready :meth:`read_future` holds (None when absent)."""
        return _wrap(self._fdb, lambda: None if future.value is None else bytes(future.value))

    def commit_future(self) -> Any:
        """The binding's commit future; :meth:`finish` once it is ready."""
        return _wrap(self._fdb, self._tr.commit)

    def finish(self, future: Any) -> None:
        """Raise what a ready future failed with, as a StorageError."""
        _wrap(self._fdb, future.wait)

    def on_error_future(self, error: StorageError) -> Any:
        """The binding's ``on_error`` future (its backoff); :meth:`finish_on_error` once ready."""
        cause = error.__cause__
        if not isinstance(cause, self._fdb.FDBError):
            cause = self._fdb.FDBError(error.code)
        return self._tr.on_error(cause)

    def finish_on_error(self, error: StorageError, future: Any) -> None:
        """Re-raise ``error`` when it is not retried, or on_error's own failure (1031, 1025)."""
        try:
            future.wait()
        except self._fdb.FDBError as failed:
            if failed.code == error.code:  # not retryable, or past the retry limit
                raise error from None
            # on_error's own failure: transaction_timed_out (1031) past the timeout,
            # transaction_cancelled (1025) after cancel, as the sqlite engine reports them.
            raise StorageError(failed.code, failed.description) from failed

    def reset(self) -> None:
        """Start afresh; FoundationDB's reset drops per-transaction options, so set them again."""
        self._tr.reset()
        self._options(self._tr)

    def cancel(self) -> None:
        self._tr.cancel()


class FdbDatabase:
    """A FoundationDB cluster behind the quick protocol.

    ``timeout_ms`` and ``retry_limit`` are set on each transaction it creates (the
    ``timeout`` and ``retry_limit`` transaction options), not as database options: the
    binding shares one database object per cluster file per process (``fdb.open``
    caches it), so two URLs naming one cluster with different ``timeout=`` would
    otherwise overwrite each other's.
    """

    #: Engines serve the default namespace; :mod:`keyspace.namespace` wraps them for others.
    namespace: str | None = None

    def __init__(
        self,
        fdb: Any,
        db: Any,
        url: str,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        retry_limit: int = DEFAULT_RETRY_LIMIT,
    ) -> None:
        self._fdb = fdb
        self._db = db
        self.url = url
        self.timeout_ms = timeout_ms
        self.retry_limit = retry_limit

    def _set_options(self, tr: Any) -> None:
        tr.options.set_timeout(self.timeout_ms)
        tr.options.set_retry_limit(self.retry_limit)

    def create_transaction(self) -> FdbTransaction:
        tr = _wrap(self._fdb, self._db.create_transaction)
        return FdbTransaction(self._fdb, tr, self._set_options)

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


def open_fdb(
    cluster_file: str | None,
    url: str,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    retry_limit: int = DEFAULT_RETRY_LIMIT,
) -> FdbDatabase:
    """Connect to the cluster in ``cluster_file`` (None = the default) and check it answers.

    ``timeout_ms`` and ``retry_limit`` become every transaction's ``timeout`` and
    ``retry_limit`` options (see :class:`FdbDatabase`).
    """
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
    return FdbDatabase(fdb, db, url, timeout_ms=timeout_ms, retry_limit=retry_limit)
