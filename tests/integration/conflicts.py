"""A helper for conflict tests: commit, and say whether it conflicted."""

from __future__ import annotations

from keyspace import StorageError
from keyspace.protocol import Transaction


def commits(tr: Transaction) -> bool:
    """Commit ``tr``: True when it committed, False on a conflict (1020); else raise."""
    try:
        tr.commit()
    except StorageError as error:
        if error.code != 1020:
            raise
        return False
    return True
