"""What a running job's handler and its worker tell each other: cancellation and progress.

A handler's :class:`~quick.app.Meta` holds one :class:`JobSignals`, shared with the
worker that runs it. The worker's lease keeper (``consumer.keeper``) sets
:attr:`JobSignals.cancelled` when a renewal finds the job's cancel mark
(``quick.cancel`` on a leased job), and writes the latest :class:`Progress` the handler
recorded into the job's record with its next renewal, in the transaction it pays
anyway: a job that records no progress and is not cancelled costs nothing more, and
one that records progress many times costs one renewal's bytes per keeper round.

The two travel across threads (a sync handler runs in a lane's thread, the keeper in
trio's): each is a plain attribute written by one side and read by the other, and a
progress value is replaced whole, never changed in place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue
from quick.errors import InvalidArgument

__all__ = ["MAX_PROGRESS_TEXT", "Progress", "JobSignals", "check_progress"]

#: The most bytes (UTF-8) of a progress text: it rides in the job's record, whose
#: headroom under the value limit (``quick.records.JOB_RECORD_HEADROOM``) it must fit.
MAX_PROGRESS_TEXT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """How far a running job has come, as its handler last recorded it."""

    fraction: float
    text: str = ""
    #: When the handler recorded it (wall-clock ms).
    at_ms: int = 0

    def to_stored(self) -> list[Any]:
        """The form stored in the job record (field ``pg``)."""
        return [self.fraction, self.text, self.at_ms]

    @classmethod
    def from_stored(cls, value: Any) -> Progress:
        """Decode field ``pg``; CorruptValue when it is not ``[fraction, text, at_ms]``."""
        if not isinstance(value, list | tuple) or len(value) != 3:
            raise CorruptValue(f"progress {value!r} is not [fraction, text, at_ms]")
        fraction, text, at = value
        if (
            not isinstance(fraction, int | float)
            or isinstance(fraction, bool)
            or not 0 <= fraction <= 1
            or not isinstance(text, str)
            or not isinstance(at, int)
            or isinstance(at, bool)
        ):
            raise CorruptValue(f"progress {value!r} is not [fraction, text, at_ms]")
        return cls(fraction=float(fraction), text=text, at_ms=at)


def check_progress(fraction: Any, text: Any) -> tuple[float, str]:
    """``(fraction, text)`` checked; InvalidArgument naming the bad one."""
    if (
        not isinstance(fraction, int | float)
        or isinstance(fraction, bool)
        or not 0 <= fraction <= 1  # before isfinite: NaN fails it, a huge int cannot overflow
        or not math.isfinite(fraction)
    ):
        raise InvalidArgument("fraction", f"must be a finite number from 0 to 1, not {fraction!r}")
    if not isinstance(text, str):
        raise InvalidArgument("text", f"must be a string, not {type(text).__name__}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PROGRESS_TEXT:
        raise InvalidArgument("text", f"is {size} bytes; at most {MAX_PROGRESS_TEXT} are kept")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidArgument("text", f"is not valid text: {error}") from None
    return float(fraction), text


class JobSignals:
    """One running attempt's cancel flag and latest progress (see the module docstring)."""

    __slots__ = ("cancelled", "progress", "_version", "_written")

    def __init__(self) -> None:
        #: Set by the worker when the job was cancelled while it runs.
        self.cancelled = False
        #: The latest progress the handler recorded, or None.
        self.progress: Progress | None = None
        self._version = 0
        self._written = 0

    def record(self, fraction: Any, text: Any = "") -> None:
        """Keep ``(fraction, text)`` as the latest progress, to be written by the worker."""
        fraction, text = check_progress(fraction, text)
        # The queue's clock (quick.jobs.now_ms; quick.jobs imports this module).
        self.progress = Progress(fraction=fraction, text=text, at_ms=time.time_ns() // 1_000_000)
        self._version += 1

    def unwritten(self) -> tuple[int, Progress] | None:
        """The progress not yet written, with its version (for :meth:`written`)."""
        version = self._version
        progress = self.progress
        if version == self._written or progress is None:
            return None
        return version, progress

    def written(self, version: int) -> None:
        """The progress of ``version`` is in the store (a later one may still wait)."""
        self._written = max(self._written, version)
