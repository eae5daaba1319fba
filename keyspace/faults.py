"""Fault injection: an engine wrapper whose commits fail the ways FoundationDB's do.

From a seed and per-error rates, a commit of a transaction that writes may

* fail with ``not_committed`` (1020): nothing is written;
* fail with ``commit_unknown_result`` (1021): half the time *after* really
  committing, half the time without writing anything;
* fail with ``transaction_too_old`` (1007): nothing is written.

Read-only commits never fail, as on FoundationDB. Layers above run their tests under
this wrapper; it is how retry-safety is proven: a body retried after a 1021 that did
commit must not apply its effect twice.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from keyspace.errors import StorageError
from keyspace.protocol import Database, Transaction
from keyspace.retry import run_transaction

__all__ = ["FaultRates", "FaultyDatabase", "FaultyTransaction"]

T = TypeVar("T")

_WRITES = frozenset(
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


class FaultyDatabase:
    """Wraps a database so that its transactions' commits fail at the given rates."""

    def __init__(self, inner: Database, rates: FaultRates, *, seed: int = 0) -> None:
        self.inner = inner
        self.rates = rates
        self.url = inner.url
        self.namespace = inner.namespace
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: dict[int, int] = {1020: 0, 1021: 0, 1007: 0}

    def draw(self) -> tuple[int | None, bool]:
        """The fault for the next commit (None = none) and, for 1021, whether to commit first."""
        rates = self.rates
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


class FaultyTransaction:
    """A transaction whose commit may fail by injection; everything else is the inner one's."""

    def __init__(self, db: FaultyDatabase, inner: Transaction) -> None:
        self._db = db
        self._inner = inner
        self._writes = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in _WRITES:
            self._writes = True
        return attr

    def commit(self) -> None:
        if not self._writes:
            self._inner.commit()
            return
        code, commit_first = self._db.draw()
        if code is None:
            self._inner.commit()
            return
        if code == 1021 and commit_first:
            self._inner.commit()
            raise StorageError(1021, "injected after the commit was applied")
        self._inner.reset()
        raise StorageError(code, "injected; nothing was written")

    def on_error(self, error: BaseException) -> None:
        self._inner.on_error(error)
        self._writes = False

    def reset(self) -> None:
        self._inner.reset()
        self._writes = False
