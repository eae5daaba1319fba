"""Riding out a store that does not answer: a consumer's tasks wait, log once, and resume.

Theory of operation
-------------------
A store can stop answering for any length of time: a FoundationDB cluster out of reach
(every transaction ends with transaction_timed_out, 1031, once its timeout passes), one
that fails retryable errors past the retry limit, or a full disk
(:class:`keyspace.errors.StoreFull`). None of these is cured by exiting, so none ends a
consumer (:func:`is_outage` tells them from errors retrying cannot cure, such as a
damaged store, which are raised as before). Every task that meets one — claim rounds,
the lease keeper, the lanes' and the group committer's settlements, the chores —
reports it to the consumer's one :class:`Patience`, waits a backoff
(:func:`retry_delay`) and tries again.

Patience logs the outage once when it starts, then every :data:`REPORT_EVERY` seconds
while it lasts, and once more when every activity that failed has succeeded again: a
few lines per outage, never a line per retry. A store that comes and goes (a nearly
full disk where small writes fit and large ones do not) logs at most one start, and
its end, per :data:`REPORT_EVERY`; the outages in between are counted, not logged.
Logger ``quick.consumer``, level warning, with the fields ``activity``, ``error``,
``failures`` and ``seconds``.

Settlements are retried until they commit: recording an attempt is fenced by the
claim's token, so a retry after another consumer took the job records nothing for it
(it reports ``lease_lost``), and otherwise the job is spared a second run. Retries end
only when the consumer is killed, or its grace period after a stop has passed
(:meth:`Patience.stop_retrying`); those jobs stay leased and run again once their
leases expire.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from keyspace.errors import StorageError

__all__ = [
    "FIRST_DELAY",
    "MAX_DELAY",
    "OUTAGE_CODES",
    "REPORT_EVERY",
    "Patience",
    "is_outage",
    "retry_delay",
]

T = TypeVar("T")

log = logging.getLogger("quick.consumer")

#: The wait after a first failure: short, as a passing fault is the common case.
FIRST_DELAY = 0.05
#: The longest wait between tries: one try per task every few seconds costs a store
#: nothing, and a worker resumes within this long of the store answering again.
MAX_DELAY = 2.0
#: Seconds between "still unavailable" lines while an outage lasts.
REPORT_EVERY = 60.0
#: Codes that mean "the store is not answering now" whatever the retry loop did:
#: timed_out, transaction_timed_out and io_error (a full disk:
#: :class:`keyspace.errors.StoreFull`). Retryable codes (raised past the retry limit)
#: mean the same.
OUTAGE_CODES = frozenset({1004, 1031, 1510})


def is_outage(error: BaseException) -> bool:
    """True for a storage error that waiting may cure (see :data:`OUTAGE_CODES`)."""
    return isinstance(error, StorageError) and (error.code in OUTAGE_CODES or error.retryable)


def retry_delay(failures: int, jitter: float, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: doubling from
    :data:`FIRST_DELAY` up to ``cap``, scaled by ``0.5 + jitter / 2`` (``jitter`` in
    [0, 1)) so the tasks of many workers do not retry in step."""
    exponent = min(max(failures, 1) - 1, 30)
    return min(math.ldexp(FIRST_DELAY, exponent), cap) * (0.5 + jitter / 2)


class Patience:
    """One consumer's account of its store's outages, shared by its tasks and threads.

    Args:
        clock: monotonic seconds (for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failing: dict[str, StorageError] = {}
        self._since = 0.0
        self._reported = 0.0
        self._failures = 0
        self._logged_start = -math.inf
        self._quiet = False
        self._rng = random.Random()
        #: When retries give up (monotonic seconds); see :meth:`stop_retrying`.
        self.give_up_at = math.inf

    @property
    def outage(self) -> bool:
        """True while some activity's last try failed with an outage."""
        return bool(self._failing)

    def stop_retrying(self, at: float) -> None:
        """Let retries give up from ``at`` (monotonic seconds): the end of the grace
        period when the consumer stops, now when it is killed."""
        self.give_up_at = min(self.give_up_at, at)

    def given_up(self) -> bool:
        """True once retries should give up."""
        return self._clock() >= self.give_up_at

    def failed(self, activity: str, error: StorageError) -> None:
        """Record that ``activity`` failed with an outage; log if it starts or lasts on."""
        now = self._clock()
        with self._lock:
            starting = not self._failing
            self._failing[activity] = error
            self._failures += 1
            if starting:
                self._since = self._reported = now
                self._quiet = now - self._logged_start < REPORT_EVERY
                if self._quiet:
                    return
                self._logged_start = now
            elif now - self._reported >= REPORT_EVERY:
                self._reported = now
            else:
                return
            failures, seconds = self._failures, now - self._since
        fields = {"activity": activity, "error": str(error), "failures": failures}
        if starting:
            log.warning(
                "store unavailable: %s failed (%s); waiting and retrying until it answers",
                activity,
                error,
                extra=fields,
            )
        else:
            log.warning(
                "store still unavailable after %.0f s",
                seconds,
                extra={**fields, "seconds": round(seconds, 1)},
            )

    def succeeded(self, activity: str) -> None:
        """Record that ``activity`` succeeded; log the outage's end once nothing fails."""
        if not self._failing:
            return
        now = self._clock()
        with self._lock:
            if self._failing.pop(activity, None) is None or self._failing:
                return
            failures, seconds = self._failures, now - self._since
            self._failures = 0
            if self._quiet:
                return
        log.warning(
            "store available again after %.0f s",
            seconds,
            extra={"failures": failures, "seconds": round(seconds, 1)},
        )

    def delay(self, failures: int, cap: float = MAX_DELAY) -> float:
        """:func:`retry_delay` with fresh jitter, cut short where retries give up."""
        wait = retry_delay(failures, self._rng.random(), cap)
        return max(0.0, min(wait, self.give_up_at - self._clock()))

    async def retry(
        self,
        activity: str,
        call: Callable[..., Awaitable[T]],
        *args: Any,
        until: trio.Event | None = None,
        cap: float = MAX_DELAY,
    ) -> T | None:
        """``await call(*args)`` until it does not fail with an outage; its result, or
        None once ``until`` is set or retries give up. Other errors are raised.

        Cancellation: the waits between tries are cancelled with the caller.
        """
        failures = 0
        while True:
            try:
                result = await call(*args)
            except StorageError as error:
                failures = self._failed_try(activity, error, failures)
            else:
                self.succeeded(activity)
                return result
            if until is not None and until.is_set():
                return None
            if self.given_up():
                self._gave_up(activity)
                return None
            with trio.move_on_after(self.delay(failures, cap)):
                if until is None:
                    await trio.sleep_forever()
                await until.wait()

    def retry_blocking(self, activity: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)`` in this thread until it does not fail with an outage; its result,
        or None once retries give up. Other errors are raised."""
        failures = 0
        while True:
            try:
                result = fn(*args)
            except StorageError as error:
                failures = self._failed_try(activity, error, failures)
            else:
                self.succeeded(activity)
                return result
            if self.given_up():
                self._gave_up(activity)
                return None
            time.sleep(self.delay(failures))

    @staticmethod
    def _gave_up(activity: str) -> None:
        log.warning(
            "%s given up: the consumer stopped while the store did not answer",
            activity,
            extra={"activity": activity},
        )

    def _failed_try(self, activity: str, error: StorageError, failures: int) -> int:
        """Record one failed try (re-raising ``error`` unless it is an outage); the count."""
        if not is_outage(error):
            raise error
        self.failed(activity, error)
        return failures + 1
