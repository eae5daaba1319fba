"""A stored record that did not decode, named by its key: what tolerant readers return in
its place, so one bad record never hides the rest."""

from __future__ import annotations

from dataclasses import dataclass

from keyspace.layout import describe

__all__ = ["CorruptRecord"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CorruptRecord:
    """A stored record that did not decode: its key and why, shown in place of the record."""

    key: bytes
    error: str

    @property
    def where(self) -> str:
        """The key in words (``job  queue='t1' job_id='...'``), for messages."""
        return describe(self.key)
