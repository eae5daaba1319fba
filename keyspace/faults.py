"""Fault injection: an engine wrapper whose transactions fail the ways FoundationDB's do.

URL parameters (any engine; see :mod:`keyspace.opening`):

* ``faults=NAME:RATE,...`` with ``seed=N``: from a seed and per-error rates, a commit
  of a transaction that writes may fail with ``not_committed`` (1020, nothing
  written), ``commit_unknown_result`` (1021: half the time *after* really committing,
  half the time without writing anything) or ``transaction_too_old`` (1007, nothing
  written). Read-only commits never fail, as on FoundationDB.
* ``outage=START+DURATION`` (seconds): from START seconds after the database is
  opened, for DURATION seconds, this process sees the cluster as unreachable. As in
  FoundationDB's client, where a read version or a commit waits for a proxy that
  never answers (``getConsistentReadVersion`` and ``tryCommit`` in
  ``fdbclient/NativeAPI.actor.cpp``), every round trip (a read, ``get_read_version``,
  a watch, a commit that writes) blocks until the outage ends or the transaction's
  ``timeout=`` passes, and then fails with transaction_timed_out (1031). With
  ``timeout=0`` it blocks until the outage ends. Writes and read-only commits are
  local and never block.
* ``disk_full=START+DURATION`` (seconds): in that window every commit that writes
  fails with the engine's full-disk error (:class:`keyspace.errors.StoreFull`, io_error
  1510, not retryable; nothing is written), as the embedded engine's commits do on a full
  filesystem; reads still answer.

A failed commit leaves the transaction as FoundationDB leaves it: ``on_error`` backs
off and resets it, and keeps both the timeout clock (counted from the transaction's
creation) and the retry count, so ``timeout=`` and ``retry_limit=`` hold across
injected faults as they do on a cluster; only ``reset()`` restarts them.

Layers above run their tests under this wrapper; it is how retry-safety is proven: a
body retried after a 1021 that did commit must not apply its effect twice.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from keyspace.errors import StorageError, StoreFull
from keyspace.limits import DEFAULT_TIMEOUT_MS
from keyspace.protocol import WRITE_METHODS, Database, KeyValue, ReadView, Transaction, Watch
from keyspace.retry import run_transaction

__all__ = ["FaultRates", "FaultyDatabase", "FaultyTransaction", "Window", "unreachable_wait"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRates:
    """Probabilities, per committing transaction, of each injected error."""

    not_committed: float = 0.0
    commit_unknown_result: float = 0.0
    transaction_too_old: float = 0.0

    def __post_init__(self) -> None:
        total = self.not_committed + self.commit_unknown_result + self.transaction_too_old
        if min(self.not_committed, self.commit_unknown_result, self.transaction_too_old) < 0:
            raise ValueError("fault rates must not be negative")
        if total > 1:
            raise ValueError(f"fault rates add up to {total}, more than 1")

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """Rates from ``"not_committed:0.05,commit_unknown_result:0.05"`` (names or codes)."""
        aliases = {
            "1020": "not_committed",
            "1021": "commit_unknown_result",
            "1007": "transaction_too_old",
        }
        rates: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, rate = item.partition(":")
            name = aliases.get(name, name)
            if not sep or name not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fault {item!r}; expected NAME:RATE")
            try:
                rates[name] = float(rate)
            except ValueError:
                raise ValueError(f"fault rate {rate!r} is not a number") from None
        return cls(**rates)


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A stretch of time, in seconds counted from when the database was opened."""

    start: float
    duration: float

    @classmethod
    def parse(cls, text: str) -> Window:
        """From ``"START+DURATION"`` (a URL's query decodes ``+`` to a space: both are taken)."""
        parts = re.split(r"[+\s]+", text.strip())
        try:
            start, duration = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"{text!r}: expected START+DURATION in seconds, e.g. 2+60") from None
        if not (math.isfinite(start) and math.isfinite(duration)) or min(start, duration) < 0:
            raise ValueError(f"{text!r}: START and DURATION must be finite and not negative")
        return cls(start=start, duration=duration)

    def contains(self, elapsed: float) -> bool:
        """True while ``elapsed`` seconds after opening lie inside the window."""
        return self.start <= elapsed < self.start + self.duration

    def left(self, elapsed: float) -> float:
        """Seconds from ``elapsed`` until the window ends (0 once past it)."""
        return max(0.0, self.start + self.duration - elapsed)


def unreachable_wait(
    outage: Window | None, elapsed: float, time_left: float | None
) -> tuple[float, bool]:
    """How a round trip started ``elapsed`` s after opening fares: (seconds it blocks,
    whether it then fails with 1031). ``time_left`` is the transaction's time until its
    timeout (None: no timeout). Outside an outage: (0, False)."""
    if outage is None or not outage.contains(elapsed):
        return 0.0, False
    left = outage.left(elapsed)
    if time_left is not None and time_left <= left:
        return max(0.0, time_left), True
    return left, False


class FaultyDatabase:
    """Wraps a database so that its transactions fail as asked (see the module docstring).

    Args:
        inner: the database wrapped.
        rates: commit failures to inject at random.
        seed: the seed of those draws.
        outage: when this process sees the cluster as unreachable.
        disk_full: when commits that write fail with :class:`~keyspace.errors.StoreFull`.
        timeout_ms: the transaction timeout (the URL's ``timeout=``; 0 = none) an outage
            counts down to 1031; by default the inner engine's own.
    """

    def __init__(
        self,
        inner: Database,
        rates: FaultRates | None = None,
        *,
        seed: int = 0,
        outage: Window | None = None,
        disk_full: Window | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        self.inner = inner
        self.rates = rates or FaultRates()
        self.outage = outage
        self.disk_full = disk_full
        if timeout_ms is None:
            inner_timeout = getattr(inner, "timeout", None)
            timeout = DEFAULT_TIMEOUT_MS / 1000 if inner_timeout is None else float(inner_timeout)
        else:
            timeout = timeout_ms / 1000
        self.timeout = timeout
        self.url = inner.url
        self.namespace = inner.namespace
        self.opened = time.monotonic()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: dict[int, int] = {1020: 0, 1021: 0, 1007: 0, 1031: 0, 1510: 0}

    def elapsed(self) -> float:
        """Seconds since this database was opened (the clock of outage windows)."""
        return time.monotonic() - self.opened

    def count(self, code: int) -> None:
        """Count one injected error of ``code``."""
        with self._lock:
            self.injected[code] += 1

    def draw(self) -> tuple[int | None, bool]:
        """The fault for the next commit (None = none) and, for 1021, whether to commit first."""
        rates = self.rates
        if not (rates.not_committed or rates.commit_unknown_result or rates.transaction_too_old):
            return None, False
        with self._lock:
            roll = self._rng.random()
            commit_first = self._rng.random() < 0.5
            for code, rate in (
                (1020, rates.not_committed),
                (1021, rates.commit_unknown_result),
                (1007, rates.transaction_too_old),
            ):
                if roll < rate:
                    self.injected[code] += 1
                    return code, commit_first
                roll -= rate
        return None, False

    def create_transaction(self) -> FaultyTransaction:
        return FaultyTransaction(self, self.inner.create_transaction())

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return run_transaction(self, fn, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> FaultyDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultyDatabase({self.inner!r}, {self.rates})"


class _FaultyReads:
    """A read view whose every round trip first passes the injected outage."""

    def __init__(self, tr: FaultyTransaction, view: ReadView) -> None:
        self._tr = tr
        self._view = view

    def get(self, key: bytes) -> bytes | None:
        self._tr.round_trip()
        return self._view.get(key)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self._tr.round_trip()
        return self._view.get_range(begin, end, limit=limit, reverse=reverse)

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self._tr.round_trip()
        return self._view.get_range_startswith(prefix, limit=limit, reverse=reverse)


class FaultyTransaction(_FaultyReads):
    """A transaction whose round trips and commit may fail by injection; everything else
    is the inner one's."""

    def __init__(self, db: FaultyDatabase, inner: Transaction) -> None:
        super().__init__(self, inner)
        self._db = db
        self._inner = inner
        self._writes = False
        self._created = time.monotonic()
        self.snapshot = _FaultyReads(self, inner.snapshot)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in WRITE_METHODS:
            self._writes = True
        return attr

    def round_trip(self) -> None:
        """Wait out an injected outage as a call to an unreachable cluster does (1031
        once the transaction's timeout passes)."""
        db = self._db
        time_left = db.timeout - (time.monotonic() - self._created) if db.timeout else None
        blocked, timed_out = unreachable_wait(db.outage, db.elapsed(), time_left)
        if blocked:
            time.sleep(blocked)
        if timed_out:
            db.count(1031)
            raise StorageError(
                1031, "injected outage: the cluster did not answer before the timeout"
            )

    def get_many(self, keys: Sequence[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        self.round_trip()
        return self._inner.get_many(keys, snapshot=snapshot)

    def get_ranges(
        self, ranges: Sequence[tuple[bytes, bytes, int]], *, snapshot: bool = False
    ) -> list[list[KeyValue]]:
        self.round_trip()
        return self._inner.get_ranges(ranges, snapshot=snapshot)

    def get_read_version(self) -> int:
        self.round_trip()
        return self._inner.get_read_version()

    def watch(self, key: bytes) -> Watch:
        self.round_trip()
        return self._inner.watch(key)

    def commit(self) -> None:
        if not self._writes:
            self._inner.commit()
            return
        self.round_trip()
        db = self._db
        if db.disk_full is not None and db.disk_full.contains(db.elapsed()):
            db.count(1510)
            raise StoreFull("injected: the disk holding the store is full")
        code, commit_first = db.draw()
        if code is None:
            self._inner.commit()
            return
        if code == 1021 and commit_first:
            self._inner.commit()
            raise StorageError(1021, "injected after the commit was applied")
        # Nothing is written: the inner transaction keeps its writes until ``on_error``
        # resets it, which keeps its timeout clock and retry count (a reset would not).
        raise StorageError(code, "injected; nothing was written")

    def on_error(self, error: BaseException) -> None:
        self._inner.on_error(error)
        self._writes = False

    def reset(self) -> None:
        self._inner.reset()
        self._writes = False
        self._created = time.monotonic()
