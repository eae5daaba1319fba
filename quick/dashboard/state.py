"""What every dashboard request needs, set once by the app and read by its routes."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from keyspace.protocol import Database

__all__ = ["State", "state"]


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """What every request needs: the store and whether actions are allowed."""

    db: Database
    allow_actions: bool


def state() -> State:
    """The running app's :class:`State` (``create_app`` stores it)."""
    found: State = current_app.extensions["quick"]
    return found
