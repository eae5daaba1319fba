"""A database wrapper that records each transaction's read round trips and lifetime.

On a remote FoundationDB cluster every read that reaches the store is a network round
trip, and a transaction lives at most 5 seconds; code that reads once per item in one
transaction works on the embedded engine and fails on a cluster. :class:`Probe` wraps any
database of the storage seam and keeps one :class:`Try` per transaction try: how many
read round trips it made (counted, so a test need not be timing-sensitive) and how long
it lived. Open the inner database with ``?latency=read:MS`` to also feel the waits.

What counts as a round trip follows both engines: a point read of a key this try has
already read or written is answered by the transaction itself (FoundationDB's
read-your-writes cache, the embedded engine's read cache), so it is not counted; a
``get_many`` counts one when any of its keys is new; every range read counts one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from keyspace.protocol import Database, KeyValue, Transaction, VersionstampFuture, Watch
from keyspace.retry import run_transaction

__all__ = ["Probe", "ProbeTransaction", "Try"]

T = TypeVar("T")


@dataclass(slots=True)
class Try:
    """One try of one transaction: its read round trips, and seconds from start to end."""

    round_trips: int = 0
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    outcome: str = "open"  # "committed", or the error that ended the try

    def end(self, outcome: str) -> None:
        self.elapsed = time.monotonic() - self.started
        self.outcome = outcome


class _CountingReads:
    """Reads through one view of the inner transaction, counted on the owner's try."""

    def __init__(self, owner: ProbeTransaction, view: Any) -> None:
        self._owner = owner
        self._view = view

    def get(self, key: bytes) -> bytes | None:
        self._owner.point_reads([key])
        value: bytes | None = self._view.get(key)
        return value

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self._owner.range_read()
        rows: list[KeyValue] = self._view.get_range(begin, end, limit=limit, reverse=reverse)
        return rows

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self._owner.range_read()
        rows: list[KeyValue] = self._view.get_range_startswith(prefix, limit=limit, reverse=reverse)
        return rows


class ProbeTransaction(_CountingReads):
    """A transaction of the seam that records each try in its :class:`Probe`."""

    def __init__(self, probe: Probe, inner: Transaction) -> None:
        super().__init__(self, inner)
        self._probe = probe
        self._inner = inner
        self._snapshot = _CountingReads(self, inner.snapshot)
        self._known: set[bytes] = set()
        self._try = probe.begin()

    # -- accounting --------------------------------------------------------------

    def point_reads(self, keys: Sequence[bytes]) -> None:
        """Count one round trip when any of ``keys`` is not known to this try yet."""
        if any(key not in self._known for key in keys):
            self._try.round_trips += 1
            self._known.update(keys)

    def range_read(self) -> None:
        self._try.round_trips += 1

    def _restart(self, outcome: str) -> None:
        self._try.end(outcome)
        self._known.clear()
        self._try = self._probe.begin()

    # -- the protocol ------------------------------------------------------------

    @property
    def snapshot(self) -> _CountingReads:
        return self._snapshot

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        self.point_reads(keys)
        return self._inner.get_many(keys, snapshot=snapshot)

    def get_ranges(
        self, ranges: Sequence[tuple[bytes, bytes, int]], *, snapshot: bool = False
    ) -> list[list[KeyValue]]:
        if ranges:
            self.range_read()  # issued together: one round trip
        return self._inner.get_ranges(ranges, snapshot=snapshot)

    def set(self, key: bytes, value: bytes) -> None:
        self._known.add(key)
        self._inner.set(key, value)

    def clear(self, key: bytes) -> None:
        self._known.add(key)
        self._inner.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._inner.clear_range(begin, end)

    def clear_range_startswith(self, prefix: bytes) -> None:
        self._inner.clear_range_startswith(prefix)

    def add(self, key: bytes, param: bytes) -> None:
        self._inner.add(key, param)

    def bit_and(self, key: bytes, param: bytes) -> None:
        self._inner.bit_and(key, param)

    def bit_or(self, key: bytes, param: bytes) -> None:
        self._inner.bit_or(key, param)

    def bit_xor(self, key: bytes, param: bytes) -> None:
        self._inner.bit_xor(key, param)

    def max(self, key: bytes, param: bytes) -> None:
        self._inner.max(key, param)

    def min(self, key: bytes, param: bytes) -> None:
        self._inner.min(key, param)

    def byte_max(self, key: bytes, param: bytes) -> None:
        self._inner.byte_max(key, param)

    def byte_min(self, key: bytes, param: bytes) -> None:
        self._inner.byte_min(key, param)

    def compare_and_clear(self, key: bytes, param: bytes) -> None:
        self._inner.compare_and_clear(key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        self._inner.set_versionstamped_key(key, value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._inner.set_versionstamped_value(key, value)

    def get_versionstamp(self) -> VersionstampFuture:
        return self._inner.get_versionstamp()

    def watch(self, key: bytes) -> Watch:
        self.point_reads([key])
        return self._inner.watch(key)

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._inner.add_read_conflict_range(begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        self._inner.add_read_conflict_key(key)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._inner.add_write_conflict_range(begin, end)

    def add_write_conflict_key(self, key: bytes) -> None:
        self._inner.add_write_conflict_key(key)

    def get_read_version(self) -> int:
        return self._inner.get_read_version()

    def get_committed_version(self) -> int:
        return self._inner.get_committed_version()

    def commit(self) -> None:
        self._inner.commit()  # a failed commit ends its try in on_error
        self._restart("committed")

    def on_error(self, error: BaseException) -> None:
        outcome = f"{type(error).__name__}: {error}"
        try:
            self._inner.on_error(error)
        except BaseException:
            self._try.end(outcome)
            raise
        self._restart(outcome)

    def reset(self) -> None:
        self._inner.reset()
        self._restart("reset")

    def cancel(self) -> None:
        self._inner.cancel()


class Probe:
    """A :class:`~keyspace.protocol.Database` over ``inner`` recording every try in :attr:`tries`.

    A try that is still open when a test looks (one that raised out of its body) counts
    too, with its elapsed time so far.
    """

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.url = inner.url
        self.namespace = inner.namespace
        self.tries: list[Try] = []

    def begin(self) -> Try:
        attempt = Try()
        self.tries.append(attempt)
        return attempt

    def create_transaction(self) -> Transaction:
        return ProbeTransaction(self, self.inner.create_transaction())

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return run_transaction(self, fn, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def watching(self) -> Iterator[list[Try]]:
        """The tries begun (and ended) inside the ``with`` block, in order."""
        first = len(self.tries)
        found: list[Try] = []
        try:
            yield found
        finally:
            for attempt in self.tries[first:]:
                if attempt.outcome == "open" and attempt.round_trips:
                    attempt.end("open")
                if attempt.round_trips or attempt.outcome != "open":
                    found.append(attempt)
