"""quick's error family above the storage seam, and the two exceptions handlers raise.

Every error here derives from :class:`keyspace.QuickError`. Validation errors are also
``ValueError``/``TypeError`` and carry the offending ``field``; they are raised before
anything is written. :class:`Snooze` and :class:`Discard` are not errors but a
handler's control flow (put the job back for later; drop it without retrying), so
they derive from ``Exception`` only.
"""

from __future__ import annotations

from keyspace.errors import QuickError

__all__ = [
    "InvalidArgument",
    "InvalidPayload",
    "LeaseLost",
    "JobNotFound",
    "JobRunning",
    "QueueMoved",
    "ResultUnavailable",
    "JobDeadLettered",
    "JobDiscarded",
    "JobCancelled",
    "ResultTimeout",
    "CorruptResult",
    "Snooze",
    "Discard",
]


class InvalidArgument(QuickError, ValueError):
    """An argument quick cannot accept; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class InvalidPayload(QuickError, TypeError):
    """A payload that msgpack cannot encode; ``field`` is ``"payload"``."""

    def __init__(self, problem: str, field: str = "payload") -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class LeaseLost(QuickError):
    """The job's lease passed to another owner (or the job is gone); nothing was changed."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"lease on job {job_id} lost: {reason}")


class JobNotFound(QuickError, LookupError):
    """No job (or dead letter) with that id."""

    def __init__(self, job_id: str, detail: str = "") -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r}" + (f" ({detail})" if detail else ""))


class JobRunning(QuickError):
    """The job holds a live lease, so it cannot be cancelled now."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} is running; it can only be cancelled when not leased")


class QueueMoved(QuickError):
    """The queue was moved to another store by ``quick migrate``; enqueue there instead.

    ``destination`` is the URL of the store the queue now lives in.
    """

    def __init__(self, queue: str, destination: str) -> None:
        self.queue = queue
        self.destination = destination
        super().__init__(f"queue {queue!r} moved to {destination}; enqueue there")


class ResultUnavailable(QuickError):
    """The job finished without a result (:func:`quick.result`); subclasses say how."""

    def __init__(self, job_id: str, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)


class JobDeadLettered(ResultUnavailable):
    """The job was dead-lettered; ``error`` is its last error."""

    def __init__(self, job_id: str, error: str) -> None:
        self.error = error
        super().__init__(job_id, f"job {job_id!r} was dead-lettered: {error or '(no error text)'}")


class JobDiscarded(ResultUnavailable):
    """The job was discarded (``Discard``, or its extension gave it up); ``reason`` says why."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.reason = reason
        super().__init__(job_id, f"job {job_id!r} was discarded: {reason or '(no reason given)'}")


class JobCancelled(ResultUnavailable):
    """The job was cancelled before it ran to completion."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id!r} was cancelled")


class ResultTimeout(QuickError, TimeoutError):
    """The job did not finish within ``timeout`` seconds; it may still finish later."""

    def __init__(self, job_id: str, timeout: float) -> None:
        self.job_id = job_id
        self.timeout = timeout
        waited = f"within {timeout} s" if timeout else "yet"
        super().__init__(f"job {job_id!r} has not finished {waited}")


class CorruptResult(QuickError):
    """The stored result of a finished job does not decode; ``key`` names it."""

    def __init__(self, job_id: str, key: str, problem: str) -> None:
        self.job_id = job_id
        self.key = key
        self.problem = problem
        super().__init__(f"the result of job {job_id!r} is corrupt ({key}): {problem}")


class Snooze(Exception):
    """Raised by a handler: run the job again after ``seconds``, without using an attempt."""

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise InvalidArgument("seconds", "snooze must not be negative")
        self.seconds = seconds
        super().__init__(f"snooze {seconds} s")


class Discard(Exception):
    """Raised by a handler: drop the job and record ``reason``."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "discarded")
