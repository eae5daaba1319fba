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
import uuid
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from keyspace.errors import StorageError
from keyspace.protocol import Database, Transaction

__all__ = [
    "TransactionBackoff",
    "Tries",
    "transactional",
    "run_transaction",
    "is_database",
    "watch_retry_pause",
    "retry_counts",
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


class TransactionBackoff:
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


#: Errors the retry loops of this process caught and retried, by FoundationDB error code
#: (1020 a conflict, 1021 an unknown commit result, ...): a count only, read by the
#: consumer's metrics (``quick_transaction_retries_total{code}``). Plain int adds, so the
#: count is exact under the GIL.
_retried: dict[int, int] = {}


def retry_counts() -> dict[int, int]:
    """How many tries this process's retry loops retried, by error code, since it started."""
    return dict(_retried)


def is_database(obj: object) -> bool:
    """True for a database handle, False for a transaction."""
    return hasattr(obj, "create_transaction")


class Tries:
    """What the tries of one transactional call did: made before the retry loop.

    A retry after ``commit_unknown_result`` may follow a try that did commit; a call
    whose answer depends on what its tries did keeps that here, so its retry answers
    as the committed try would:

    * :meth:`first` counts the tries and says whether this one is the first (nothing of
      the call can have committed yet, so an enqueue may skip a lookup);
    * ``token``, made once per call and written by every try, lets a retry recognise
      what its own earlier tries wrote (a claim round's leases, cron's marks);
    * ``found`` is what the last try found (how many a purge deleted);
    * ``touched`` gathers what every try worked on (the queues a claim round leased from);
    * ``unsure`` gathers what tries whose commit result was unknown wrote: the body says
      what it wrote with :meth:`did` (or :meth:`did_more`, bit by bit), and the retry
      loop keeps that when the try's commit result is unknown (a ``Tries`` among the
      body's arguments is told). A try that conflicted committed nothing, so its retry
      has nothing of it to look for.
    """

    __slots__ = ("runs", "found", "touched", "unsure", "_token", "_doing")

    def __init__(self, token: str | None = None) -> None:
        self.runs = 0
        self.found = 0
        self.touched: set[str] = set()
        self.unsure: dict[str, str] = {}
        self._token = token
        self._doing: dict[str, str] | None = None

    @property
    def token(self) -> str:
        """An id for this call, the same for every try (made when first asked, unless
        given: the simulation draws its own)."""
        if self._token is None:
            self._token = uuid.uuid4().hex
        return self._token

    def first(self) -> bool:
        """Count a try starting; True for the call's first try."""
        self.runs += 1
        self._doing = None
        return self.runs == 1

    def did(self, wrote: dict[str, str]) -> None:
        """Record what the running try wrote (kept in ``unsure`` if its commit result is
        unknown)."""
        self._doing = wrote

    def did_more(self, wrote: dict[str, str]) -> None:
        """Add to what the running try wrote (a claim round tells it queue by queue)."""
        if self._doing is None:
            self._doing = {}
        self._doing.update(wrote)

    def commit_unknown(self) -> None:
        """The running try's commit result is unknown: keep what it said it wrote."""
        if self._doing is not None:
            self.unsure.update(self._doing)
            self._doing = None


def run_transaction(db: Database, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(tr, *args, **kwargs)`` in a new transaction until it commits."""
    tr = db.create_transaction()
    while True:
        try:
            result = fn(tr, *args, **kwargs)
            tr.commit()
            return result
        except StorageError as error:
            if error.retryable:
                _retried[error.code] = _retried.get(error.code, 0) + 1
            if error.maybe_committed:
                for arg in args:
                    if isinstance(arg, Tries):
                        arg.commit_unknown()
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
