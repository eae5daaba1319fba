"""An async transaction: awaited reads, buffered writes, and the sync queue functions joined.

:class:`AsyncTransaction` wraps one engine transaction. Its reads are awaited (served
from the bounded pool, see :mod:`quick.aio_waiting`); its writes are buffered in memory
by the engine, so they are plain calls; :meth:`AsyncTransaction.call` runs a
synchronous transactional function (``quick.enqueue``, ``workflow.signal``, ...) joined
to it, in the pool, because those functions read blocking. :func:`transact` is the
retry loop of :func:`keyspace.transactional` for an ``async def fn(tr)``: the same
commit, the same ``on_error`` (the engine's, so the same backoff, error classification,
retry limit and timeout), only awaited.

Retry semantics: as for ``@transactional``. A conflict (1020) or an unknown commit
result (1021) runs ``fn`` again from the start, on the same transaction reset, so
``fn`` must be safe to run twice and ids that must survive a retry (a ``job_id`` for
``quick.aio.enqueue``) are made before :func:`transact` is called.

Waiting: on the embedded engine every read, the commit and ``on_error`` run in the
bounded pool. On FoundationDB (an engine transaction handing out its binding's
futures, :class:`BindingFutures`) point reads, ``get_many``, the commit and
``on_error``'s backoff are the binding's futures, awaited through their completion
callbacks with no thread held; range reads and :meth:`AsyncTransaction.call` still
run in the pool, since the binding iterates ranges and the queue functions read
blocking. A namespaced fdb store (``?namespace=``) waits in the pool throughout.

An async transaction is used by one task at a time, as an engine transaction is used
by one thread at a time: do not await two of its calls concurrently.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from keyspace.errors import StorageError
from keyspace.protocol import WRITE_METHODS, Database, KeyValue, ReadView, Transaction
from keyspace.retry import is_database
from quick.aio_waiting import await_future, blocking, run_blocking
from quick.errors import InvalidArgument

__all__ = [
    "AsyncReads",
    "AsyncTransaction",
    "BindingFutures",
    "transact",
    "check_database",
    "run_joined",
]

T = TypeVar("T")


@runtime_checkable
class BindingFutures(Protocol):
    """A transaction that hands out its binding's futures (the fdb engine's)."""

    def read_future(self, key: bytes, *, snapshot: bool = False) -> Any: ...
    def read_value(self, future: Any) -> bytes | None: ...
    def commit_future(self) -> Any: ...
    def finish(self, future: Any) -> None: ...
    def on_error_future(self, error: StorageError) -> Any: ...
    def finish_on_error(self, error: StorageError, future: Any) -> None: ...


class AsyncReads:
    """The read half of an async transaction; ``tr.snapshot`` is one adding no conflicts."""

    def __init__(
        self, view: ReadView, futures: BindingFutures | None = None, snapshot: bool = False
    ) -> None:
        self._view = view
        self._futures = futures
        self._snapshot = snapshot

    async def get(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None when absent."""
        futures = self._futures
        if futures is None:
            return await run_blocking(self._view.get, key)
        future = futures.read_future(key, snapshot=self._snapshot)
        await await_future(future)
        return futures.read_value(future)

    async def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        """Key-value pairs with ``begin <= key < end`` in key order (``limit`` 0 = all)."""
        return await run_blocking(self._view.get_range, begin, end, limit=limit, reverse=reverse)

    async def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        """Key-value pairs whose key starts with ``prefix``."""
        return await run_blocking(
            self._view.get_range_startswith, prefix, limit=limit, reverse=reverse
        )


class AsyncTransaction(AsyncReads):
    """One engine transaction, awaited; ``tr.sync`` is the engine's own.

    Writes (``set``, ``clear``, ``add``, ...) only buffer, so they are not awaited.
    """

    def __init__(self, tr: Transaction) -> None:
        futures = tr if isinstance(tr, BindingFutures) else None
        super().__init__(tr, futures)
        self.sync = tr
        self.snapshot = AsyncReads(tr.snapshot, futures, snapshot=True)

    def __getattr__(self, name: str) -> Any:
        if name in _BUFFERED:
            return getattr(self.sync, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    async def get_many(
        self, keys: Sequence[bytes], *, snapshot: bool = False
    ) -> list[bytes | None]:
        """The values at ``keys`` in order, in one round trip."""
        futures = self._futures
        if futures is None:
            return await run_blocking(self.sync.get_many, keys, snapshot=snapshot)
        pending = [futures.read_future(key, snapshot=snapshot) for key in keys]
        for future in pending:
            await await_future(future)
        return [futures.read_value(future) for future in pending]

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(tr.sync, *args, **kwargs)`` in the pool: a sync transactional function joined
        to this transaction (it commits with it, or not at all)."""
        return await run_blocking(fn, self.sync, *args, **kwargs)

    async def commit(self) -> None:
        """Commit; raises StorageError (1020 on a conflict, 1021 when the outcome is unknown)."""
        futures = self._futures
        if futures is None:
            await run_blocking(self.sync.commit)
            return
        future = futures.commit_future()
        await await_future(future)
        futures.finish(future)

    async def on_error(self, error: BaseException) -> None:
        """The engine's ``on_error``: back off and reset when ``error`` is retryable, else raise."""
        futures = self._futures
        if futures is None or not isinstance(error, StorageError):
            await run_blocking(self.sync.on_error, error)
            return
        future = futures.on_error_future(error)
        await await_future(future)
        futures.finish_on_error(error, future)


#: Engine transaction methods that only buffer (no I/O), so an async transaction
#: passes them straight through.
_BUFFERED = WRITE_METHODS | {
    "get_versionstamp",
    "add_read_conflict_range",
    "add_read_conflict_key",
    "get_committed_version",
}


def check_database(db: Any, field: str = "db") -> Database:
    """``db`` if it is a database handle, else :class:`InvalidArgument` naming ``field``."""
    if isinstance(db, AsyncTransaction) or not is_database(db):
        raise InvalidArgument(
            field, f"must be a database (quick.open(url)), not {type(db).__name__}"
        )
    return db  # type: ignore[no-any-return]


def run_joined(
    db_or_tr: Database | AsyncTransaction, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> Awaitable[T]:
    """``fn(db_or_tr, ...)`` for a sync transactional ``fn``, off the loop, to await: on
    a database it runs (and retries) on its own; on an async transaction it joins it.

    The caller's context variables go with the call when the process uses OpenTelemetry,
    so an enqueue records the span active on the caller's loop (:mod:`quick.tracecontext`).

    Raises:
        InvalidArgument: ``db_or_tr`` is neither (checked before anything is written).
    """
    if "opentelemetry" in sys.modules:
        fn = functools.partial(contextvars.copy_context().run, fn)
    if isinstance(db_or_tr, AsyncTransaction):
        return db_or_tr.call(fn, *args, **kwargs)
    return blocking(fn, check_database(db_or_tr, "db_or_tr"), *args, **kwargs)


async def transact(db: Database, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``await fn(tr, *args, **kwargs)`` in a new async transaction until it commits.

    Args:
        db: the database.
        fn: an ``async def`` taking the :class:`AsyncTransaction` first.

    Returns:
        What ``fn`` returned in the try that committed.

    Raises:
        InvalidArgument: ``db`` is not a database or ``fn`` not an async function
            (before anything is read or written).
        StorageError: a non-retryable error, or the retry limit or timeout passed.

    Retry semantics: see the module docstring; the same as ``@transactional``.
    """
    check_database(db)
    if not inspect.iscoroutinefunction(fn):
        raise InvalidArgument("fn", f"must be an async function taking the transaction, not {fn!r}")
    tr = AsyncTransaction(db.create_transaction())
    while True:
        try:
            result = await fn(tr, *args, **kwargs)
            await tr.commit()
            return result
        except StorageError as error:
            await tr.on_error(error)
