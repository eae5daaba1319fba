"""Waiting in trio tests for something another task (a consumer) will make true."""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["until"]


async def until(predicate: Callable[[], object], timeout: float, poll: float = 0.01) -> None:
    """Return once ``predicate()`` is true; raise ``trio.TooSlowError`` after ``timeout`` s."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(poll)
