"""The storage seam: FoundationDB's transaction protocol, an embedded engine and an fdb adapter.

``keyspace`` owns every byte quick stores: the engines, the key layout and the value
codec. It imports neither trio nor click, and nothing above it knows which engine runs.
"""

from keyspace.errors import (
    EngineUnavailable,
    InvalidURL,
    QuickError,
    StorageError,
    StoreFull,
)
from keyspace.faults import FaultRates, FaultyDatabase
from keyspace.opening import DEFAULT_URL, open, resolve_url
from keyspace.protocol import Database, KeyValue, ReadView, Transaction
from keyspace.retry import is_database, run_transaction, transactional
from keyspace.subspace import Subspace

__all__ = [
    "DEFAULT_URL",
    "Database",
    "EngineUnavailable",
    "FaultRates",
    "FaultyDatabase",
    "InvalidURL",
    "KeyValue",
    "QuickError",
    "ReadView",
    "StorageError",
    "StoreFull",
    "Subspace",
    "Transaction",
    "is_database",
    "open",
    "resolve_url",
    "run_transaction",
    "transactional",
]
