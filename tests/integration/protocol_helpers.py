"""Helpers the protocol conformance tests share: a subspace filled with numbered keys, and
the type of the ``once`` fixture (``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace

#: The ``once`` fixture: runs a non-idempotent body exactly once despite retries.
Once = Callable[[Database, Callable[[Transaction], Any]], Any]


def fill(db: Database, space: Subspace, n: int) -> list[bytes]:
    """Set ``n`` keys ``space.pack((i,))`` to ``b"v<i>"`` in one transaction; the keys."""
    keys = [space.pack((i,)) for i in range(n)]

    def body(tr: Transaction) -> None:
        for i, key in enumerate(keys):
            tr.set(key, b"v%d" % i)

    db.transact(body)
    return keys
