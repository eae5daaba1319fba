"""The transaction protocol every engine implements, modelled on FoundationDB's.

Layers above ``keyspace`` are written once against these protocols and run unchanged
on the ``sqlite`` and ``fdb`` engines. Calls are blocking and return values, not
futures; the one exception is :meth:`Transaction.get_versionstamp`, whose value only
exists once the transaction has committed.

Semantics, identical on every engine:

* Keys and values are ``bytes``; keys order bytewise. Range ends are exclusive.
* Reads see the transaction's own earlier writes (read-your-writes), snapshot reads
  included. Serializable reads add read-conflict ranges; snapshot reads do not.
* A transaction keeps what it has read: a ``get`` of a key it has already read (by
  ``get`` or ``get_many``, snapshot or not) is answered without a round trip, as by
  FoundationDB's read-your-writes cache, and a serializable one still adds its read
  conflict. So a snapshot ``get_many`` of the keys a body will then read one by one
  costs one round trip and leaves its conflicts unchanged.
* A transaction conflicts (error 1020 at commit) when a key it read serializably was
  written by a transaction that committed after its read version.
* The read version is taken lazily: by the first read (``get``, ``get_many``, a range
  read, ``watch``) or ``get_read_version()``, else at commit. ``add_read_conflict_range``
  takes none; its range is checked against whichever read version the transaction ends
  up with (FoundationDB's ``Transaction::addReadConflictRange`` only records the range,
  and ``tryCommit`` fetches a read version if none was). So a write committed between
  ``add_read_conflict_range`` and the first read, or the commit of a transaction that
  never reads, does not conflict with it.
* Atomic mutations add no read conflict (see :mod:`keyspace.atomic` for their rules).
* Watches (``tr.watch(key)``) wake a waiter when a key's committed value changes. A
  watch reads its key serializably, so it adds a read conflict range as a ``get`` does.
  A watch outlives its transaction: once the transaction commits, the watch stays
  alive until it fires or is cancelled, whether or not anyone waits on it (on
  FoundationDB it holds resources on the cluster and counts against the client's
  10,000-watch limit, too_many_watches 1032). Call ``watch.cancel()`` on every watch
  no longer needed (in a ``finally``). On FoundationDB a watch whose transaction does
  not commit (an error, a reset or cancel) fails at once; the embedded engine's watches
  hold nothing while no one waits on them, but code is written for both.
* A versionstamped key is unreadable until commit: a read reaching any key it may
  become raises accessed_unreadable (1036), as does reading a pending versionstamped value.
* ``get_committed_version()`` is -1 before commit and after a read-only commit;
  ``get_versionstamp()`` called once commit has started gives a future that fails with
  used_during_commit (2017), so take it before committing.
* Each database has a transaction timeout (1031 transaction_timed_out, counted from the
  transaction's creation across its retries) and a retry limit (past it ``on_error``
  re-raises the error), set from the URL (``timeout=`` ms, ``retry_limit=``).
* Limits: key <= 10,000 bytes (2102), value <= 100,000 bytes (2103), transaction
  <= 10,000,000 bytes (2101), lifetime 5 seconds from the read version (1007).
* Keys from ``b"\\xff"`` on are FoundationDB's system keyspace: point reads
  (``get``, ``get_many``), watches, conflict keys and writes of them raise
  key_outside_legal_range (2004); ``b"\\xff"`` is legal only as a range end.
* After ``cancel()``, and once ``on_error`` has raised (other than past the timeout),
  reads, watches, ``commit`` and ``on_error`` raise transaction_cancelled (1025) until
  ``reset()`` (the sqlite engine refuses writes too; FoundationDB fails their commit).
* Arguments that are not ``bytes`` raise ``TypeError("key must be bytes, not str")``
  (the name varies: key, value, versionstamp template) on every engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "KeyValue",
    "ReadView",
    "Transaction",
    "Database",
    "VersionstampFuture",
    "Watch",
    "WRITE_METHODS",
]

KeyValue = tuple[bytes, bytes]
T = TypeVar("T")

#: The :class:`Transaction` methods that only add to the write set (buffered until
#: commit, no I/O): what wrappers pass through untouched.
WRITE_METHODS = frozenset(
    {
        "set",
        "clear",
        "clear_range",
        "clear_range_startswith",
        "add",
        "bit_and",
        "bit_or",
        "bit_xor",
        "max",
        "min",
        "byte_max",
        "byte_min",
        "compare_and_clear",
        "set_versionstamped_key",
        "set_versionstamped_value",
        "add_write_conflict_range",
        "add_write_conflict_key",
    }
)


class ReadView(Protocol):
    """The read half of a transaction; ``tr.snapshot`` is one that adds no conflicts."""

    def get(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None when absent."""
        ...

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        """Key-value pairs with ``begin <= key < end`` in key order (``limit`` 0 = all)."""
        ...

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        """Key-value pairs whose key starts with ``prefix``."""
        ...


class VersionstampFuture(Protocol):
    """The 10-byte versionstamp of a transaction, known once it has committed."""

    def wait(self) -> bytes:
        """The versionstamp; raises StorageError(2021) before a successful commit."""
        ...


class Watch(Protocol):
    """Fires once a key's committed value differs from the one its transaction saw.

    A watch that fails (an error from the engine: its transaction did not commit, too
    many watches, a store that cannot be read) fires too, at once, with ``failed`` set:
    it is a reason to look again, after a pause
    (:func:`keyspace.retry.watch_retry_pause`), never an error raised to the waiter.
    """

    #: True once :meth:`wait` returned True because the watch failed, not because the
    #: value changed.
    failed: bool

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the value changed (True), or ``timeout`` passed or :meth:`cancel` (False)."""
        ...

    def cancel(self) -> None:
        """Stop watching; a blocked :meth:`wait` returns False at once. Thread-safe."""
        ...


@runtime_checkable
class Transaction(ReadView, Protocol):
    """One FoundationDB-style transaction. Not safe to share between threads."""

    @property
    def snapshot(self) -> ReadView:
        """Reads through this view add no read-conflict ranges."""
        ...

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        """The values at ``keys``, in order (None when absent), read concurrently.

        One round trip however many keys: FoundationDB issues every read before waiting
        on any. ``snapshot`` reads add no read-conflict ranges.
        """
        ...

    def get_ranges(
        self, ranges: Sequence[tuple[bytes, bytes, int]], *, snapshot: bool = False
    ) -> list[list[KeyValue]]:
        """Several forward range reads, ``(begin, end, limit)`` each, issued together: the
        rows of each, in order, as :meth:`get_range` would return them.

        One round trip however many ranges: FoundationDB issues every read before waiting
        on any. Each range adds the read conflict its own ``get_range`` would (none when
        ``snapshot``).
        """
        ...

    def set(self, key: bytes, value: bytes) -> None: ...
    def clear(self, key: bytes) -> None: ...
    def clear_range(self, begin: bytes, end: bytes) -> None: ...
    def clear_range_startswith(self, prefix: bytes) -> None: ...

    def add(self, key: bytes, param: bytes) -> None: ...
    def bit_and(self, key: bytes, param: bytes) -> None: ...
    def bit_or(self, key: bytes, param: bytes) -> None: ...
    def bit_xor(self, key: bytes, param: bytes) -> None: ...
    def max(self, key: bytes, param: bytes) -> None: ...
    def min(self, key: bytes, param: bytes) -> None: ...
    def byte_max(self, key: bytes, param: bytes) -> None: ...
    def byte_min(self, key: bytes, param: bytes) -> None: ...
    def compare_and_clear(self, key: bytes, param: bytes) -> None: ...

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        """Set a key whose 10-byte placeholder (at the LE offset in its last 4 bytes) is stamped."""
        ...

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        """Set a value whose 10-byte placeholder (LE offset in its last 4 bytes) is stamped."""
        ...

    def get_versionstamp(self) -> VersionstampFuture: ...

    def watch(self, key: bytes) -> Watch:
        """Watch ``key`` for a change from the value this transaction sees (its own writes too).

        As in FoundationDB, commit the transaction for the watch to count; a watch is
        a hint to look again, not a log of changes (a change and change back may not fire).
        The watch stays alive after the commit until it fires or :meth:`Watch.cancel`
        is called: cancel it once it is no longer needed, as FoundationDB's
        documentation asks ("Because a watch outlives the transaction that creates it,
        any watch that is no longer needed should be cancelled").
        """
        ...

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None: ...
    def add_read_conflict_key(self, key: bytes) -> None: ...
    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None: ...
    def add_write_conflict_key(self, key: bytes) -> None: ...

    def get_read_version(self) -> int: ...

    def get_committed_version(self) -> int:
        """The commit version; -1 before commit and for a read-only transaction."""
        ...

    def commit(self) -> None: ...

    def on_error(self, error: BaseException) -> None:
        """Back off and reset when ``error`` is retryable; re-raise it otherwise."""
        ...

    def reset(self) -> None: ...

    def cancel(self) -> None: ...


@runtime_checkable
class Database(Protocol):
    """A handle on one store; safe to share between threads of a process.

    ``namespace`` is the URL's ``?namespace=NAME`` (None = the default, unprefixed keyspace).
    """

    url: str
    namespace: str | None

    def create_transaction(self) -> Transaction: ...

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(tr, *args, **kwargs)`` in the retry loop and commit; return its result."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Database: ...

    def __exit__(self, *exc: object) -> None: ...
