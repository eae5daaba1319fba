"""Wrappers at the storage seam for tests: a database that records how long each of its
transactions lived, and one that refuses point reads of system keys as FoundationDB does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from keyspace.errors import StorageError
from keyspace.limits import SYSTEM_PREFIX
from keyspace.protocol import Database, Transaction
from keyspace.retry import run_transaction

__all__ = ["SeamDatabase", "StrictSystemKeys", "TimedTransactions"]

T = TypeVar("T")


class _Proxy:
    """A transaction passed through unchanged, for subclasses to watch or refuse calls."""

    def __init__(self, inner: Transaction) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class StrictSystemKeys(_Proxy):
    """Refuses point reads and watches of keys starting with ``0xff`` with error 2004, as
    a FoundationDB cluster does (the ``fdb`` engine passes them to it unchanged)."""

    def _check(self, key: bytes) -> None:
        if key[:1] == SYSTEM_PREFIX:
            raise StorageError(2004, "key outside legal range")

    def get(self, key: bytes) -> bytes | None:
        self._check(key)
        result: bytes | None = self._inner.get(key)
        return result

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        for key in keys:
            self._check(key)
        return self._inner.get_many(keys, snapshot=snapshot)

    def watch(self, key: bytes) -> Any:
        self._check(key)
        return self._inner.watch(key)


class TimedTransactions(_Proxy):
    """Records, on its database, how long each try of the transaction lived: from its
    creation (or the reset before a retry) until its commit returned."""

    def __init__(self, inner: Transaction, lives: list[float], lock: threading.Lock) -> None:
        super().__init__(inner)
        self._lives = lives
        self._lock = lock
        self._born = time.monotonic()

    def commit(self) -> None:
        self._inner.commit()
        with self._lock:
            self._lives.append(time.monotonic() - self._born)

    def on_error(self, error: BaseException) -> None:
        self._inner.on_error(error)
        self._born = time.monotonic()

    def reset(self) -> None:
        self._inner.reset()
        self._born = time.monotonic()


class SeamDatabase:
    """``inner`` with every transaction wrapped by ``wrap`` (a proxy class above), and
    named ``url`` (default: the inner database's), e.g. to play another spelling of it."""

    def __init__(
        self, inner: Database, wrap: Callable[[Transaction], Any], url: str | None = None
    ) -> None:
        self.inner = inner
        self.url = inner.url if url is None else url
        self.namespace = inner.namespace
        self._wrap = wrap

    @classmethod
    def timed(cls, inner: Database) -> tuple[SeamDatabase, list[float]]:
        """A database recording its transactions' lifetimes, and the list they go to."""
        lives: list[float] = []
        lock = threading.Lock()
        return cls(inner, lambda tr: TimedTransactions(tr, lives, lock)), lives

    def create_transaction(self) -> Any:
        return self._wrap(self.inner.create_transaction())

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return run_transaction(self, fn, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> SeamDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
