"""Namespaces: several applications (or test runs) in one store without seeing each other.

Theory of operation
-------------------
``?namespace=NAME`` on any database URL wraps the engine in :class:`NamespacedDatabase`,
which works as FoundationDB tenants do: every key on the way in gets the namespace's
prefix, ``fdb.tuple.pack(("ns", NAME))``, and every key on the way out loses it. Point
reads, ``get_many``, range reads (bounds clamped to the namespace), writes, clears,
atomic ops, versionstamped keys (the placeholder offset shifted by the prefix), conflict
ranges and watches all go through it, so code above sees the same keys, the same
layout and the same errors as without one, and nothing outside the namespace. Without
a namespace no wrapper is used, so the default keeps quick's layout byte for byte; the
prefix's first element, ``"ns"``, differs from the default root's ``"qk"``, so no
namespace can collide with it.

Limits: as for FoundationDB tenants, the key limit (10,000 bytes) applies to the whole
stored key, prefix included; the prefix is ``len(NAME.encode()) + 6`` bytes, at most
134 for the longest name allowed. The user keyspace inside a namespace is the same as
outside: ``b"\\xff"`` is a legal range end, and point reads, watches, conflict keys and
writes of keys from ``0xff`` on are refused (2004), as FoundationDB refuses them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from keyspace.atomic import AtomicMethods, AtomicOp
from keyspace.errors import StorageError
from keyspace.limits import (
    SYSTEM_PREFIX,
    check_point_key,
    check_read_key,
    require_bytes,
    versionstamp_template,
)
from keyspace.protocol import Database, KeyValue, ReadView, Transaction, VersionstampFuture, Watch
from keyspace.retry import run_transaction
from keyspace.subspace import pack

__all__ = ["MAX_NAME_LENGTH", "NamespacedDatabase", "namespace_prefix", "validate_namespace"]

T = TypeVar("T")

#: The longest namespace name, in characters; keeps the prefix a small part of a key.
MAX_NAME_LENGTH = 64


def validate_namespace(name: str) -> str:
    """``name`` if it can name a namespace, else ValueError saying why."""
    if not name:
        raise ValueError("namespace must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"namespace is {len(name)} characters; at most {MAX_NAME_LENGTH}")
    if not name.isprintable() or name != name.strip():
        raise ValueError(f"namespace {name!r} must be printable, without surrounding spaces")
    return name


def namespace_prefix(name: str) -> bytes:
    """The key prefix of namespace ``name``."""
    return pack(("ns", validate_namespace(name)))


def _write_key(key: bytes) -> None:
    require_bytes("key", key)
    if key[:1] == SYSTEM_PREFIX:
        raise StorageError(2004, "keys starting with 0xff are reserved")


class _Reads:
    """Reads of one view (serializable or snapshot) inside the namespace."""

    def __init__(self, view: ReadView, prefix: bytes) -> None:
        self._view = view
        self._prefix = prefix

    def _rows(self, rows: list[KeyValue]) -> list[KeyValue]:
        cut = len(self._prefix)
        return [(key[cut:], value) for key, value in rows]

    def get(self, key: bytes) -> bytes | None:
        check_point_key(key)
        return self._view.get(self._prefix + key)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        check_read_key(begin)
        check_read_key(end)
        p = self._prefix
        return self._rows(self._view.get_range(p + begin, p + end, limit=limit, reverse=reverse))

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        check_read_key(prefix)
        rows = self._view.get_range_startswith(self._prefix + prefix, limit=limit, reverse=reverse)
        return self._rows(rows)


class NamespacedTransaction(_Reads, AtomicMethods):
    """A transaction whose keys all live under one namespace prefix."""

    def __init__(self, inner: Transaction, prefix: bytes) -> None:
        super().__init__(inner, prefix)
        self._tr = inner
        self.snapshot = _Reads(inner.snapshot, prefix)

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        for key in keys:
            check_point_key(key)
        return self._tr.get_many([self._prefix + key for key in keys], snapshot=snapshot)

    def get_ranges(
        self, ranges: Sequence[tuple[bytes, bytes, int]], *, snapshot: bool = False
    ) -> list[list[KeyValue]]:
        p = self._prefix
        for begin, end, _ in ranges:
            check_read_key(begin)
            check_read_key(end)
        found = self._tr.get_ranges([(p + b, p + e, n) for b, e, n in ranges], snapshot=snapshot)
        return [self._rows(rows) for rows in found]

    def set(self, key: bytes, value: bytes) -> None:
        _write_key(key)
        self._tr.set(self._prefix + key, value)

    def clear(self, key: bytes) -> None:
        _write_key(key)
        self._tr.clear(self._prefix + key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        check_read_key(begin)
        check_read_key(end)
        self._tr.clear_range(self._prefix + begin, self._prefix + end)

    def clear_range_startswith(self, prefix: bytes) -> None:
        check_read_key(prefix)
        self._tr.clear_range_startswith(self._prefix + prefix)

    def atomic_op(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        _write_key(key)
        getattr(self._tr, op.value)(self._prefix + key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        body, offset = versionstamp_template(key)
        _write_key(body)
        shifted = self._prefix + body + struct.pack("<I", offset + len(self._prefix))
        self._tr.set_versionstamped_key(shifted, value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        _write_key(key)
        self._tr.set_versionstamped_value(self._prefix + key, value)

    def get_versionstamp(self) -> VersionstampFuture:
        return self._tr.get_versionstamp()

    def watch(self, key: bytes) -> Watch:
        check_point_key(key)
        return self._tr.watch(self._prefix + key)

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        check_read_key(begin)
        check_read_key(end)
        self._tr.add_read_conflict_range(self._prefix + begin, self._prefix + end)

    def add_read_conflict_key(self, key: bytes) -> None:
        check_point_key(key)
        self._tr.add_read_conflict_key(self._prefix + key)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        check_read_key(begin)
        check_read_key(end)
        self._tr.add_write_conflict_range(self._prefix + begin, self._prefix + end)

    def add_write_conflict_key(self, key: bytes) -> None:
        check_point_key(key)
        self._tr.add_write_conflict_key(self._prefix + key)

    def get_read_version(self) -> int:
        return self._tr.get_read_version()

    def get_committed_version(self) -> int:
        return self._tr.get_committed_version()

    def commit(self) -> None:
        self._tr.commit()

    def on_error(self, error: BaseException) -> None:
        self._tr.on_error(error)

    def reset(self) -> None:
        self._tr.reset()

    def cancel(self) -> None:
        self._tr.cancel()


class NamespacedDatabase:
    """A database seen through one namespace; see the module docstring.

    Engine-specific attributes (``path``, ``timeout``, ...) are the inner database's.
    """

    def __init__(self, inner: Database, name: str) -> None:
        self.inner = inner
        self.namespace: str | None = validate_namespace(name)
        self.prefix = namespace_prefix(name)
        self.url = inner.url

    def create_transaction(self) -> NamespacedTransaction:
        return NamespacedTransaction(self.inner.create_transaction(), self.prefix)

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return run_transaction(self, fn, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __enter__(self) -> NamespacedDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NamespacedDatabase({self.inner!r}, {self.namespace!r})"
