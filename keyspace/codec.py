"""The one value codec: a format-version byte, then msgpack. Never pickle.

Every stored record goes through :func:`pack_value` / :func:`unpack_value`, so a
corrupt or foreign value is recognised and reported as :class:`CorruptValue` rather
than crashing whoever reads it.
"""

from __future__ import annotations

from typing import Any

import msgpack

from keyspace.errors import QuickError

__all__ = ["FORMAT", "CorruptValue", "pack_value", "unpack_value"]

FORMAT = 1
_HEADER = bytes([FORMAT])


class CorruptValue(QuickError, ValueError):
    """A stored value that is not a record this version of quick can read."""


def pack_value(obj: Any) -> bytes:
    """Encode ``obj`` (msgpack types only); TypeError names what cannot be encoded."""
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
        return _HEADER + packed
    except (TypeError, ValueError, OverflowError) as error:
        raise TypeError(f"cannot encode as msgpack: {error}") from error


def unpack_value(data: bytes) -> Any:
    """Decode a value written by :func:`pack_value`; CorruptValue when it is not one."""
    if not data or data[0] != FORMAT:
        raise CorruptValue(f"unknown value format {data[:1].hex() or '(empty)'}")
    try:
        return msgpack.unpackb(data[1:], raw=False, strict_map_key=False)
    except Exception as error:
        raise CorruptValue(f"undecodable value: {error}") from error
