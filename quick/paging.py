"""Reading a key range in pages, each page in its own transaction.

A FoundationDB transaction lives at most 5 seconds, and a range read of a large listing
takes many round trips; a read-only listing whose meaning allows it (each page one
consistent snapshot, the whole listing not) reads a page per transaction instead, and a
cursor resumes after the last key read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from keyspace.protocol import Database, Transaction
from keyspace.retry import is_database, run_transaction

__all__ = ["Page", "read_pages"]

T = TypeVar("T")

#: What one page read returns: its items, and the last key it read (None: the range ended).
Page = tuple[list[T], bytes | None]


def read_pages(
    db_or_tr: Database | Transaction,
    read_page: Callable[[Transaction, bytes], Page[T]],
    begin: bytes,
) -> list[T]:
    """Every item ``read_page(tr, cursor)`` finds from key ``begin`` on, page after page.

    Given a database, each page runs in its own transaction (retried on its own); given a
    transaction, every page is read in it, one snapshot.
    """
    items: list[T] = []
    cursor: bytes | None = begin
    while cursor is not None:
        if is_database(db_or_tr):
            found, last = run_transaction(db_or_tr, read_page, cursor)  # type: ignore[arg-type]
        else:
            found, last = read_page(db_or_tr, cursor)  # type: ignore[arg-type]
        items += found
        cursor = None if last is None else last + b"\x00"
    return items
