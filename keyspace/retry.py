"""The retry loop: ``@transactional`` and ``db.transact(fn)``, with FoundationDB's contract.

Given a database, a transactional function runs in a fresh transaction that is
committed; a retryable error (1020 not_committed, 1021 commit_unknown_result, 1007
transaction_too_old, ...) backs off and runs the function again from the start.
Given a transaction, the function joins it: no commit, no retry, so transactional
functions compose into one atomic unit.

Retry semantics: because 1021 is retried, the body may be applied twice. Write
bodies so a second run is harmless (check for an idempotency key first), and create
ids that must survive retries *before* entering the loop.
"""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from keyspace.errors import StorageError
from keyspace.protocol import Database, Transaction

__all__ = [
    "Backoff",
    "EarlierTries",
    "transactional",
    "run_transaction",
    "is_database",
    "watch_retry_pause",
]

P = ParamSpec("P")
T = TypeVar("T")

INITIAL_DELAY = 0.005
MAX_DELAY = 1.0
#: FoundationDB's client backoff (``fdbclient/ClientKnobs.cpp``): ``DEFAULT_BACKOFF``,
#: ``BACKOFF_GROWTH_RATE`` and ``DEFAULT_MAX_BACKOFF``.
FDB_BACKOFF = 0.01
FDB_BACKOFF_GROWTH = 2.0
FDB_MAX_BACKOFF = 1.0


def watch_retry_pause(failures: int, jitter: float, remaining: float | None = None) -> float:
    """Seconds to pause after the ``failures``-th failed watch in a row, before looking again.

    A failed watch returns at once (see :class:`keyspace.protocol.Watch`), so a waiter
    that simply looked again would spin while the failure lasts. This backs off as
    FoundationDB's ``Transaction::onError`` does: 10 ms doubling per failure up to 1 s,
    times ``jitter`` (uniform in [0, 1), so waiters spread out), and never past
    ``remaining`` (the seconds left until the waiter has something to do anyway).
    0 when there was no failure.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(FDB_BACKOFF * FDB_BACKOFF_GROWTH ** min(failures - 1, 64), FDB_MAX_BACKOFF)
    pause = ceiling * min(max(jitter, 0.0), 1.0)
    return pause if remaining is None else max(0.0, min(pause, remaining))


class Backoff:
    """FoundationDB-style retry delays: doubling from 5 ms up to a cap, with full jitter.

    The first retry after a conflict (1020) does not wait: the transaction that won has
    already committed, so a new read version sees it. Later retries back off.
    """

    __slots__ = ("delay", "max_delay", "retries", "retry_limit")

    def __init__(self, max_delay: float = MAX_DELAY, retry_limit: int | None = None) -> None:
        self.delay = INITIAL_DELAY
        self.max_delay = max_delay
        self.retries = 0
        self.retry_limit = retry_limit

    def wait(self, error: StorageError) -> None:
        """Sleep before the next try, or re-raise ``error`` if it must not be retried."""
        if not error.retryable:
            raise error
        if self.retry_limit is not None and self.retries >= self.retry_limit:
            raise error
        self.retries += 1
        if self.retries == 1 and error.code == 1020:
            return  # a conflict means another commit landed: a fresh read sees it at once
        time.sleep(self.delay * random.random())
        self.delay = min(self.delay * 2, self.max_delay)


def is_database(obj: object) -> bool:
    """True for a database handle, False for a transaction."""
    return hasattr(obj, "create_transaction")


class EarlierTries:
    """What earlier tries of one call saw, made before the retry loop.

    A retry after ``commit_unknown_result`` may follow a try that did commit; a call
    whose result depends on what it found (how many it deleted, whether the thing
    existed) keeps that here, so its retry can answer as the committed try would.
    """

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: int = 0


def run_transaction(db: Database, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(tr, *args, **kwargs)`` in a new transaction until it commits."""
    tr = db.create_transaction()
    while True:
        try:
            result = fn(tr, *args, **kwargs)
            tr.commit()
            return result
        except StorageError as error:
            tr.on_error(error)


def transactional(
    fn: Callable[Concatenate[Transaction, P], T],
) -> Callable[Concatenate[Database | Transaction, P], T]:
    """Make ``fn(tr, ...)`` accept a database (run, retry, commit) or a transaction (join)."""
    if inspect.isgeneratorfunction(fn):
        raise ValueError(f"{fn.__qualname__}: a generator cannot be transactional")

    @functools.wraps(fn)
    def wrapper(db_or_tr: Database | Transaction, *args: P.args, **kwargs: P.kwargs) -> T:
        if is_database(db_or_tr):
            return run_transaction(db_or_tr, fn, *args, **kwargs)  # type: ignore[arg-type]
        return fn(db_or_tr, *args, **kwargs)  # type: ignore[arg-type]

    return wrapper  # type: ignore[return-value]
