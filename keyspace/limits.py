"""FoundationDB's limits, and the argument checks that enforce them on the sqlite engine.

The fdb engine gets the same errors from FoundationDB itself; the conformance suite
holds both engines to them.
"""

from __future__ import annotations

import struct

from keyspace.errors import StorageError

__all__ = [
    "KEY_LIMIT",
    "VALUE_LIMIT",
    "TRANSACTION_LIMIT",
    "LIFETIME_SECONDS",
    "SYSTEM_PREFIX",
    "VERSIONSTAMP_LENGTH",
    "DEFAULT_TIMEOUT_MS",
    "DEFAULT_RETRY_LIMIT",
    "require_bytes",
    "check_key",
    "check_read_key",
    "check_point_key",
    "check_value",
    "check_range",
    "fill_versionstamp",
    "versionstamp_template",
]

KEY_LIMIT = 10_000
VALUE_LIMIT = 100_000
TRANSACTION_LIMIT = 10_000_000
LIFETIME_SECONDS = 5.0
SYSTEM_PREFIX = b"\xff"
VERSIONSTAMP_LENGTH = 10
#: A transaction's deadline across all its retries, from its creation (FoundationDB's
#: ``transaction_timeout`` database option; 0 = none). Long enough for any of quick's
#: transactions, short enough that a store that cannot commit surfaces as an error.
DEFAULT_TIMEOUT_MS = 30_000
#: Retries ``on_error`` allows one transaction (``transaction_retry_limit``; -1 = none).
DEFAULT_RETRY_LIMIT = 100


def require_bytes(name: str, value: object) -> None:
    """Raise TypeError unless ``value`` is ``bytes``; the text every engine uses."""
    if type(value) is not bytes:
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


def check_key(key: bytes) -> None:
    """Reject a key that may not be written: not bytes, too long, or in the system keyspace."""
    # One test for the usual key, then the checks one by one: this runs for every write.
    if type(key) is bytes and len(key) <= KEY_LIMIT and key[:1] != SYSTEM_PREFIX:
        return
    require_bytes("key", key)
    if len(key) > KEY_LIMIT:
        raise StorageError(2102, f"key of {len(key)} bytes exceeds {KEY_LIMIT}")
    raise StorageError(2004, "keys starting with 0xff are reserved")


def check_read_key(key: bytes) -> None:
    """Reject a range bound that may not be read: not bytes, or past ``0xff``.

    ``b"\\xff"`` itself is a legal range end (the end of the user keyspace), as on
    FoundationDB, whose range reads, clears and conflict ranges refuse only bounds
    *beyond* it (``ReadYourWritesTransaction::getRange``/``clear``/``add*ConflictRange``).
    """
    require_bytes("key", key)
    if key > SYSTEM_PREFIX:
        raise StorageError(2004, "keys after 0xff are outside the user keyspace")


def check_point_key(key: bytes) -> None:
    """Reject a key that may not be read or watched by itself: not bytes, or ``>= 0xff``.

    FoundationDB refuses a point read or a watch of any key at or past ``b"\\xff"``
    with key_outside_legal_range (``ReadYourWritesTransaction::get``/``watch``:
    ``key >= getMaxReadKey()``), so ``b"\\xff"`` is a range end, never a key.
    """
    if type(key) is bytes and key < SYSTEM_PREFIX:
        return  # the usual key, in one test: this runs for every point read
    require_bytes("key", key)
    raise StorageError(2004, "keys from 0xff on are the system keyspace, not readable")


def check_value(value: bytes) -> None:
    """Reject a value that is not bytes or is over the value limit."""
    if type(value) is bytes and len(value) <= VALUE_LIMIT:
        return  # the usual value, in one test: this runs for every write
    require_bytes("value", value)
    if len(value) > VALUE_LIMIT:
        raise StorageError(2103, f"value of {len(value)} bytes exceeds {VALUE_LIMIT}")


def check_range(begin: bytes, end: bytes) -> None:
    """Reject range bounds that are not bytes or lie outside the user keyspace."""
    check_read_key(begin)
    check_read_key(end)


def versionstamp_template(data: bytes) -> tuple[bytes, int]:
    """Split a versionstamp template into (body, placeholder offset).

    The last 4 bytes of ``data`` hold the little-endian offset of the 10-byte
    placeholder in the body, as ``fdb.tuple.pack_with_versionstamp`` writes it.
    """
    require_bytes("versionstamp template", data)
    if len(data) < 4 + VERSIONSTAMP_LENGTH:
        raise StorageError(2000, "versionstamp template is shorter than 14 bytes")
    (offset,) = struct.unpack("<I", data[-4:])
    body = data[:-4]
    if offset + VERSIONSTAMP_LENGTH > len(body):
        raise StorageError(2000, f"versionstamp offset {offset} lies outside the template")
    return body, offset


def fill_versionstamp(body: bytes, offset: int, stamp: bytes) -> bytes:
    """``body`` with the 10 bytes at ``offset`` replaced by ``stamp``."""
    return body[:offset] + stamp + body[offset + VERSIONSTAMP_LENGTH :]
