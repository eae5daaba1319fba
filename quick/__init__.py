"""quick: a QuiCK-style distributed job queue on FoundationDB.

The queue API lands in this package (see the issues); today it re-exports the storage
seam so ``quick.open(url)`` already opens either engine.
"""

from keyspace import (
    EngineUnavailable,
    InvalidURL,
    QuickError,
    StorageError,
    open,
    transactional,
)

__all__ = [
    "EngineUnavailable",
    "InvalidURL",
    "QuickError",
    "StorageError",
    "open",
    "transactional",
]
