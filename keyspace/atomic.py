"""FoundationDB's atomic mutations as pure functions over byte strings.

Each function takes the stored value (``None`` when the key is absent) and the
parameter, and returns the new value (``None`` to clear the key). The rules are
FoundationDB's (API version >= 510):

* ``add``, ``bit_*``, ``max``, ``min`` treat values as little-endian integers. The stored
  value is first zero-extended or truncated to the parameter's width; ``add`` wraps
  around on overflow; ``max``/``min`` compare as *unsigned* integers.
* A missing value behaves as zeros for ``add``/``bit_or``/``bit_xor``/``max``; ``min``
  and ``bit_and`` store the parameter as is.
* ``byte_max``/``byte_min`` compare lexicographically and store the parameter when
  the key is absent; no resizing.
* ``compare_and_clear`` clears the key when its value equals the parameter.

The engines apply these at commit (sqlite) or hand them to FoundationDB (fdb); the
sqlite engine's read-your-writes layer uses them to show pending atomic ops.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

__all__ = ["AtomicOp", "AtomicMethods", "apply"]


class AtomicOp(Enum):
    """The atomic mutation types, named as in FoundationDB."""

    ADD = "add"
    BIT_AND = "bit_and"
    BIT_OR = "bit_or"
    BIT_XOR = "bit_xor"
    MAX = "max"
    MIN = "min"
    BYTE_MAX = "byte_max"
    BYTE_MIN = "byte_min"
    COMPARE_AND_CLEAR = "compare_and_clear"


class AtomicMethods:
    """The protocol's named atomic ops, each one call of :meth:`atomic_op`.

    Engines and wrappers inherit these and implement :meth:`atomic_op` once.
    """

    def atomic_op(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        """Apply ``op`` with ``param`` to ``key`` at commit."""
        raise NotImplementedError

    def add(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.ADD, key, param)

    def bit_and(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.BIT_AND, key, param)

    def bit_or(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.BIT_OR, key, param)

    def bit_xor(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.BIT_XOR, key, param)

    def max(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.MAX, key, param)

    def min(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.MIN, key, param)

    def byte_max(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.BYTE_MAX, key, param)

    def byte_min(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.BYTE_MIN, key, param)

    def compare_and_clear(self, key: bytes, param: bytes) -> None:
        self.atomic_op(AtomicOp.COMPARE_AND_CLEAR, key, param)


def _fit(existing: bytes | None, width: int) -> bytes:
    """The stored value zero-extended or truncated to ``width`` bytes."""
    if existing is None:
        return bytes(width)
    if len(existing) >= width:
        return existing[:width]
    return existing + bytes(width - len(existing))


def _int(value: bytes) -> int:
    return int.from_bytes(value, "little", signed=False)


def _bytes(value: int, width: int) -> bytes:
    return (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little", signed=False)


def _add(existing: bytes | None, param: bytes) -> bytes | None:
    return _bytes(_int(_fit(existing, len(param))) + _int(param), len(param))


def _bit_and(existing: bytes | None, param: bytes) -> bytes | None:
    if existing is None:
        return param
    return _bytes(_int(_fit(existing, len(param))) & _int(param), len(param))


def _bit_or(existing: bytes | None, param: bytes) -> bytes | None:
    return _bytes(_int(_fit(existing, len(param))) | _int(param), len(param))


def _bit_xor(existing: bytes | None, param: bytes) -> bytes | None:
    return _bytes(_int(_fit(existing, len(param))) ^ _int(param), len(param))


def _max(existing: bytes | None, param: bytes) -> bytes | None:
    current = _fit(existing, len(param))
    return param if _int(param) > _int(current) else current


def _min(existing: bytes | None, param: bytes) -> bytes | None:
    if existing is None:
        return param
    current = _fit(existing, len(param))
    return param if _int(param) < _int(current) else current


def _byte_max(existing: bytes | None, param: bytes) -> bytes | None:
    if existing is None:
        return param
    return max(existing, param)


def _byte_min(existing: bytes | None, param: bytes) -> bytes | None:
    if existing is None:
        return param
    return min(existing, param)


def _compare_and_clear(existing: bytes | None, param: bytes) -> bytes | None:
    return None if existing == param else existing


_RULES: dict[AtomicOp, Callable[[bytes | None, bytes], bytes | None]] = {
    AtomicOp.ADD: _add,
    AtomicOp.BIT_AND: _bit_and,
    AtomicOp.BIT_OR: _bit_or,
    AtomicOp.BIT_XOR: _bit_xor,
    AtomicOp.MAX: _max,
    AtomicOp.MIN: _min,
    AtomicOp.BYTE_MAX: _byte_max,
    AtomicOp.BYTE_MIN: _byte_min,
    AtomicOp.COMPARE_AND_CLEAR: _compare_and_clear,
}


def apply(op: AtomicOp, existing: bytes | None, param: bytes) -> bytes | None:
    """The value after applying ``op`` with ``param`` to ``existing`` (None = absent)."""
    return _RULES[op](existing, param)
