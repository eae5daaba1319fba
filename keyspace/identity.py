"""A store's identity: which keyspace a database handle reaches, whatever its URL says.

Two URLs may name one keyspace (``fdb://`` and the default cluster file written out, two
copies of one cluster file, a SQLite file reached through a symlink), and no spelling
rule can tell for sure. So the keyspace says it itself: :data:`~keyspace.layout.STORE_ID`
holds 32 random hex digits, written by the first caller that finds none. Each namespace
has its own (the key lives under the namespace's root like every other key), so two
namespaces of one cluster are two stores, and two spellings of one are one.
"""

from __future__ import annotations

import uuid

from keyspace.layout import STORE_ID
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional

__all__ = ["store_identity"]


def store_identity(db: Database) -> str:
    """The identity of the keyspace ``db`` reaches, written first if it has none.

    Also a cheap probe that the store answers and accepts writes (one point read of a
    legal key, and one write the first time).

    Retry semantics: the candidate identity is made before the retry loop, and the key
    is read serializably, so two first callers racing agree on one identity.

    Raises:
        StorageError: the store failed.
    """
    return _identity(db, uuid.uuid4().hex)


@transactional
def _identity(tr: Transaction, candidate: str) -> str:
    stored = tr.get(STORE_ID)
    if stored is not None:
        # Compared, never trusted: whatever bytes are there name this keyspace.
        return stored.decode("ascii", "backslashreplace")
    tr.set(STORE_ID, candidate.encode("ascii"))
    return candidate
