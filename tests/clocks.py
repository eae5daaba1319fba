"""A fake clock for tests that wait for a timer: the sqlite engine's transaction age.

The embedded engine ages its transactions (the 5 s lifetime, the ``timeout`` parameter) by
``time.monotonic``; :class:`EngineClock` stands in for it, inside the engine module only,
so a test moves time forward instead of sleeping. On FoundationDB the cluster keeps its
own time, so there ``advance`` really waits.
"""

from __future__ import annotations

import time
import types
from typing import Any

import pytest

from keyspace import sqlite_engine

__all__ = ["EngineClock"]


class _ClockedTime(types.SimpleNamespace):
    """The ``time`` module as the sqlite engine sees it: ``monotonic`` from the fake clock."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class EngineClock:
    """The monotonic clock of the engine under test, moved by :meth:`advance`."""

    def __init__(self, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fake = engine != "fdb"
        self.now = time.monotonic()
        if self.fake:
            monkeypatch.setattr(sqlite_engine, "time", _ClockedTime(monotonic=self.monotonic))

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the engine: at once on sqlite, by waiting on fdb."""
        if self.fake:
            self.now += seconds
        else:
            time.sleep(seconds)
