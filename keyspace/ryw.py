"""Read-your-writes for an engine that buffers a transaction's writes until commit.

Theory of operation: a :class:`WriteBuffer` keeps two views of the same writes.

* The *mutation log*, in call order, is what commit applies; order matters where a
  range clear and a later set touch the same key, or two atomic ops stack.
* The *read index* answers reads: per key, whether the stored value is still needed
  (``known`` says it is not: the key was set, cleared, or range-cleared) and the
  atomic ops to apply on top; plus the merged list of cleared ranges.

Reads call :meth:`WriteBuffer.read` / :meth:`WriteBuffer.merge_range` with a way to
fetch stored values; those return what the transaction would see after its own
writes. Versionstamped keys are not readable before commit (their key is unknown):
as in FoundationDB's RYW layer, each makes the range of keys it could become
unreadable (the template with its placeholder filled from the read version, or zeros,
up to all ``0xff``), and a read reaching into that range, or of a key with a pending
versionstamped value, raises ``accessed_unreadable`` (1036).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from enum import Enum
from typing import NamedTuple

from keyspace.atomic import AtomicOp, apply
from keyspace.errors import StorageError

__all__ = ["KeyRange", "Mutation", "MutationKind", "WriteBuffer", "RangeSet", "versionstamp_range"]

KeyRange = tuple[bytes, bytes]


def versionstamp_range(body: bytes, offset: int, min_version: int) -> KeyRange:
    """Every key a versionstamped-key template may become, as FoundationDB computes it.

    From the template with its placeholder set to ``min_version`` (batch 0) to the
    template with ten ``0xff`` bytes there, inclusive (``getVersionstampKeyRange``).
    """
    begin = body[:offset] + min_version.to_bytes(8, "big") + b"\x00\x00" + body[offset + 10 :]
    end = body[:offset] + b"\xff" * 10 + body[offset + 10 :] + b"\x00"
    return begin, min(end, b"\xff")


class MutationKind(Enum):
    SET = 1
    CLEAR = 2
    CLEAR_RANGE = 3
    ATOMIC = 4
    VERSIONSTAMPED_KEY = 5
    VERSIONSTAMPED_VALUE = 6


_SET = MutationKind.SET


class Mutation(NamedTuple):
    """One buffered write, applied in order at commit (a tuple: the log is hot)."""

    kind: MutationKind
    key: bytes
    value: bytes
    end: bytes
    op: AtomicOp | None


class _Entry:
    """What the transaction has done to one key, for reads."""

    __slots__ = ("known", "value", "ops", "unreadable")

    def __init__(self, known: bool, value: bytes | None = None) -> None:
        self.known = known
        self.value = value
        self.ops: list[tuple[AtomicOp, bytes]] = []
        self.unreadable = False

    def resolve(self, stored: bytes | None) -> bytes | None:
        value = self.value if self.known else stored
        for op, param in self.ops:
            value = apply(op, value, param)
        return value


class RangeSet:
    """Disjoint, sorted half-open byte ranges."""

    __slots__ = ("begins", "ends")

    def __init__(self) -> None:
        self.begins: list[bytes] = []
        self.ends: list[bytes] = []

    def __bool__(self) -> bool:
        return bool(self.begins)

    def add(self, begin: bytes, end: bytes) -> None:
        if begin >= end:
            return
        lo = bisect.bisect_left(self.ends, begin)
        hi = bisect.bisect_right(self.begins, end)
        if lo < hi:
            begin = min(begin, self.begins[lo])
            end = max(end, self.ends[hi - 1])
        self.begins[lo:hi] = [begin]
        self.ends[lo:hi] = [end]

    def contains(self, key: bytes) -> bool:
        i = bisect.bisect_right(self.begins, key) - 1
        return i >= 0 and key < self.ends[i]

    def intersects(self, begin: bytes, end: bytes) -> bool:
        i = bisect.bisect_left(self.begins, end) - 1
        return i >= 0 and self.ends[i] > begin


class WriteBuffer:
    """A transaction's pending writes: the ordered log and the index reads consult."""

    __slots__ = ("log", "_entries", "_sorted", "cleared", "size", "stamped", "unreadable")

    def __init__(self) -> None:
        self.stamped = False
        self.log: list[Mutation] = []
        self._entries: dict[bytes, _Entry] = {}
        self._sorted: list[bytes] | None = []
        self.cleared = RangeSet()
        self.unreadable = RangeSet()
        self.size = 0

    def __bool__(self) -> bool:
        return bool(self.log)

    # -- recording writes ---------------------------------------------------

    def _entry(self, key: bytes, known: bool) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(known=known)
            self._entries[key] = entry
            self._index(key)
        return entry

    def _known(self, key: bytes, value: bytes | None) -> None:
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(True, value)
            self._index(key)
        else:
            entry.known, entry.value, entry.ops, entry.unreadable = True, value, [], False

    def set(self, key: bytes, value: bytes) -> None:
        self.log.append(Mutation(_SET, key, value, b"", None))
        self.size += len(key) + len(value)
        self._known(key, value)

    def clear(self, key: bytes) -> None:
        self.log.append(Mutation(MutationKind.CLEAR, key, b"", b"", None))
        self.size += len(key)
        self._known(key, None)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        if begin >= end:
            return
        self.log.append(Mutation(MutationKind.CLEAR_RANGE, begin, b"", end, None))
        self.size += len(begin) + len(end)
        keys = self._keys()
        low, high = bisect.bisect_left(keys, begin), bisect.bisect_left(keys, end)
        for key in keys[low:high]:
            del self._entries[key]
        del keys[low:high]
        self.cleared.add(begin, end)

    def atomic(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        self.log.append(Mutation(MutationKind.ATOMIC, key, param, b"", op))
        self.size += len(key) + len(param)
        cleared = self.cleared
        entry = self._entry(key, cleared.contains(key) if cleared.begins else False)
        entry.ops.append((op, param))

    def set_versionstamped_key(self, template: bytes, value: bytes, unreadable: KeyRange) -> None:
        """Log a versionstamped key; ``unreadable`` is every key it may become (unreadable
        until commit, and its write conflict range, as on FoundationDB)."""
        self.stamped = True
        self.unreadable.add(*unreadable)
        self.log.append(Mutation(MutationKind.VERSIONSTAMPED_KEY, template, value, b"", None))
        self.size += len(template) + len(value)

    def set_versionstamped_value(self, key: bytes, template: bytes) -> None:
        self.stamped = True
        self.log.append(Mutation(MutationKind.VERSIONSTAMPED_VALUE, key, template, b"", None))
        self.size += len(key) + len(template)
        self._known(key, None)
        self._entries[key].unreadable = True

    # -- reading through the buffer -----------------------------------------

    def _index(self, key: bytes) -> None:
        """Keep the sorted key list current as a key gains its first entry: range reads
        between writes (a claim across many queues) then cost a bisection, not a sort."""
        if self._sorted is not None:
            bisect.insort(self._sorted, key)

    def _keys(self) -> list[bytes]:
        if self._sorted is None:
            self._sorted = sorted(self._entries)
        return self._sorted

    def keys_between(self, begin: bytes, end: bytes) -> list[bytes]:
        """Keys with an entry, in order, with ``begin <= key < end``."""
        keys = self._keys()
        return keys[bisect.bisect_left(keys, begin) : bisect.bisect_left(keys, end)]

    def check_readable(self, begin: bytes, end: bytes) -> None:
        """Raise 1036 when [begin, end) reaches a key a pending versionstamped key may take."""
        if self.unreadable.intersects(begin, end):
            raise StorageError(1036, "read of a range a pending versionstamped key may fall in")

    def lookup(self, key: bytes) -> tuple[bool, _Entry | None]:
        """(needs stored value, entry) for a point read of ``key``."""
        if self.unreadable.begins and self.unreadable.contains(key):
            raise StorageError(1036, "read of a key a pending versionstamped key may take")
        entry = self._entries.get(key)
        if entry is None:
            cleared = self.cleared
            return (not (cleared.begins and cleared.contains(key)), None)
        if entry.unreadable:
            raise StorageError(1036, "read of a key with a pending versionstamped value")
        return (not entry.known, entry)

    def read(self, key: bytes, fetch: Callable[[bytes], bytes | None]) -> tuple[bytes | None, bool]:
        """(value as this transaction sees it, whether the store was consulted)."""
        needs_store, entry = self.lookup(key)
        stored = fetch(key) if needs_store else None
        if entry is None:
            return stored, needs_store
        return entry.resolve(stored), needs_store

    def touches(self, begin: bytes, end: bytes) -> bool:
        """True when a range read over [begin, end) must merge buffered writes."""
        return (
            bool(self.keys_between(begin, end))
            or self.cleared.intersects(begin, end)
            or self.unreadable.intersects(begin, end)
        )

    def merge_range(
        self,
        begin: bytes,
        end: bytes,
        stored: Iterator[tuple[bytes, bytes]],
        limit: int,
        reverse: bool,
    ) -> list[tuple[bytes, bytes]]:
        """Merge stored rows (in read order) with buffered writes over [begin, end)."""
        mine = self.keys_between(begin, end)
        if reverse:
            mine.reverse()

        def before(a: bytes, b: bytes) -> bool:
            return a > b if reverse else a < b

        out: list[tuple[bytes, bytes]] = []
        i = 0
        pending = next(stored, None)
        while pending is not None or i < len(mine):
            if pending is not None and (i >= len(mine) or before(pending[0], mine[i])):
                key, stored_value = pending
                pending = next(stored, None)
                if self.cleared.contains(key):
                    continue
                value: bytes | None = stored_value
            else:
                key = mine[i]
                i += 1
                base = None
                if pending is not None and pending[0] == key:
                    base = pending[1]
                    pending = next(stored, None)
                entry = self._entries[key]
                if entry.unreadable:
                    raise StorageError(1036, "range read over a pending versionstamped value")
                value = entry.resolve(base)
            if value is not None:
                out.append((key, value))
                if limit and len(out) >= limit:
                    break
        return out
