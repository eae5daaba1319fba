"""A stored record that did not decode, named by its key: what tolerant readers return in
its place, so one bad record never hides the rest."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from keyspace.codec import CorruptValue
from keyspace.layout import describe

__all__ = ["CorruptRecord", "UNREADABLE"]

#: What a record that does not decode, or decodes to the wrong shape, raises when read.
UNREADABLE = (CorruptValue, ValueError, TypeError, KeyError, AttributeError, struct.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class CorruptRecord:
    """A stored record that did not decode: its key and why, shown in place of the record."""

    key: bytes
    error: str

    @classmethod
    def of(cls, key: bytes, error: Exception) -> CorruptRecord:
        """The record at ``key`` that raised ``error`` when read, the reason in words."""
        return cls(key=key, error=_reason(error))

    @property
    def reason(self) -> str:
        """Why it could not be read: :attr:`error`, by the name listings give it."""
        return self.error

    @property
    def where(self) -> str:
        """The key in words (``job  queue='t1' job_id='...'``), for messages."""
        return describe(self.key)


def _reason(error: Exception) -> str:
    """Why a record could not be read, in words (a KeyError's text is just the key)."""
    if isinstance(error, KeyError):
        return f"missing field {error}"
    return str(error) or type(error).__name__
