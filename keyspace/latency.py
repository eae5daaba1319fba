"""Simulated FoundationDB latency for the sqlite engine: ``?latency=grv:1,read:0.5,commit:5``.

The embedded engine answers in microseconds; a cluster takes a network round trip to
get a read version (GRV), for each read, and to commit. Code that is fast on one and
slow on the other (a read per item in a loop, a long chain of small transactions) shows
up only with those waits, so the sqlite engine can add them where FoundationDB has them:

* ``grv``: when a transaction takes its read version (its first read, or
  ``get_read_version()``, or a commit that never read);
* ``read``: each point read, range read or ``get_many`` (one round trip for all keys)
  that reaches the store;
* ``commit``: each commit that writes (a read-only commit is local, as on FDB).

The waits are taken outside the engine's writer lock, so concurrent transactions
overlap them as clients of a cluster do. Values are milliseconds, 0 to 10,000.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Latency"]

_MAX_MS = 10_000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Seconds each kind of FoundationDB round trip costs."""

    grv: float = 0.0
    read: float = 0.0
    commit: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Latency:
        """From ``"grv:1,read:0.5,commit:5"`` (milliseconds); ValueError naming the problem."""
        seconds: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition(":")
            if not sep or name not in cls.__dataclass_fields__:
                raise ValueError(f"latency item {item!r}: expected grv:MS, read:MS or commit:MS")
            try:
                ms = float(value)
            except ValueError:
                raise ValueError(f"latency {name}: {value!r} is not a number of ms") from None
            if not 0 <= ms <= _MAX_MS:
                raise ValueError(f"latency {name}: {ms:g} ms is outside 0 to {_MAX_MS:g}")
            seconds[name] = ms / 1000
        if not seconds:
            raise ValueError("latency names no round trip; e.g. latency=grv:1,read:0.5,commit:5")
        return cls(**seconds)

    @staticmethod
    def wait(seconds: float) -> None:
        """Spend one simulated round trip (no-op for 0)."""
        if seconds > 0:
            time.sleep(seconds)
