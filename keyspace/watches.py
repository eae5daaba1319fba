"""Watches on the embedded engine: wait until a key's committed value changes.

Theory of operation
-------------------
FoundationDB's ``tr.watch(key)`` is a future that fires once the key's value differs
from the one the transaction saw. SQLite has no such notification across processes,
but every commit, from any process, appends to the file's write-ahead log. On Linux one
thread per process and file asks the kernel (inotify) to report writes to
``<file>-wal`` and bumps a counter under a condition variable; each waiting watch
re-reads its key when the counter moves. An idle waiter costs no CPU at all, and a
change is seen within a millisecond or so of its commit. The inotify descriptor is
opened once and kept, because closing one takes the kernel tens of milliseconds.
Elsewhere (no inotify) a watch re-reads its key every :data:`POLL_SECONDS`.

A value that changes and changes back between two re-reads may go unnoticed; FDB
watches make the same allowance. A watch is a hint to look again, never a source of
errors: a re-read that fails (a closed database, a timed-out or damaged store) counts
as the watch firing, with ``failed`` set, as an FDB watch that fails with an error
does, so the waiter pauses (:func:`keyspace.retry.watch_retry_pause`), rescans and
meets the real error, if it persists, in its own transaction. Re-reads
are spaced at least :data:`MIN_RECHECK_SECONDS` apart, so a waiter beside a busy
writer does not spin; after :data:`EAGER_RECHECKS` re-reads that found no change the
spacing doubles, up to :data:`MAX_RECHECK_SECONDS`. A watch that waits through a busy
drain (a worker's watch of the cancel counter) then costs a few dozen reads a second,
not a thousand, while a watch that sees its first few writes still answers within a
millisecond or so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
import threading
import time
from collections.abc import Callable

__all__ = [
    "EAGER_RECHECKS",
    "FileWatch",
    "MAX_RECHECK_SECONDS",
    "MIN_RECHECK_SECONDS",
    "POLL_SECONDS",
    "recheck_spacing",
]

#: Without inotify, how often a waiting watch re-reads its key.
POLL_SECONDS = 0.01
#: The shortest gap between two re-reads of a watched key.
MIN_RECHECK_SECONDS = 0.001
#: Re-reads that found no change before the spacing starts to double.
EAGER_RECHECKS = 8
#: The widest spacing between two re-reads of a watched key.
MAX_RECHECK_SECONDS = 0.025
#: Doublings past which the spacing is surely at its cap (2 ** 32 ms is far above it).
MAX_DOUBLINGS = 32
#: With inotify, a re-read this often anyway, in case a write went unreported.
SAFETY_SECONDS = 1.0

_IN_MODIFY = 0x002
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_EVENT = struct.Struct("iIII")


def _load_inotify() -> tuple[Callable[[int], int], Callable[[int, bytes, int], int]] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        init = libc.inotify_init1
        add = libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    init.argtypes = [ctypes.c_int]
    add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return init, add


_INOTIFY = _load_inotify()


class _Notifier:
    """Counts reported writes to one file, from a daemon thread blocked on inotify."""

    def __init__(self, path: str) -> None:
        self.changes = threading.Condition()
        self.count = 0
        self.live = False
        self._name = os.fsencode(os.path.basename(path))
        if _INOTIFY is None:
            return
        init, add = _INOTIFY
        fd = init(os.O_CLOEXEC)
        if fd < 0:
            return
        directory = os.fsencode(os.path.dirname(path) or ".")
        if add(fd, directory, _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO) < 0:
            os.close(fd)
            return
        self.live = True
        threading.Thread(target=self._run, args=(fd,), name="quick-watch", daemon=True).start()

    def _run(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                with self.changes:
                    self.live = False
                    self.changes.notify_all()
                return
            if self._mentions_file(data):
                with self.changes:
                    self.count += 1
                    self.changes.notify_all()

    def _mentions_file(self, data: bytes) -> bool:
        offset = 0
        while offset < len(data):
            _, _, _, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            if data[offset : offset + length].rstrip(b"\0") == self._name:
                return True
            offset += length
        return False


_notifiers: dict[tuple[int, str], _Notifier] = {}
_notifiers_lock = threading.Lock()


def _notifier(path: str) -> _Notifier:
    key = (os.getpid(), path)
    with _notifiers_lock:
        notifier = _notifiers.get(key)
        if notifier is None:
            notifier = _notifiers[key] = _Notifier(path)
        return notifier


def recheck_spacing(fruitless: int) -> float:
    """The least seconds between re-reads after ``fruitless`` re-reads found no change."""
    if fruitless < EAGER_RECHECKS:
        return MIN_RECHECK_SECONDS
    # The exponent is capped: 2.0 ** 1024 overflows (OverflowError), and a watch of a key
    # nobody writes (the cancel counter) passes a thousand fruitless re-reads in minutes.
    doublings = min(fruitless - EAGER_RECHECKS + 1, MAX_DOUBLINGS)
    return min(MIN_RECHECK_SECONDS * 2.0**doublings, MAX_RECHECK_SECONDS)


class FileWatch:
    """Waits until ``changed()`` is true, woken by writes to ``path``.

    Args:
        path: the file whose writes may mean a change (the engine's write-ahead log).
        changed: re-reads the watched key and says whether it differs from before.
    """

    def __init__(self, path: str, changed: Callable[[], bool]) -> None:
        self._notifier = _notifier(path)
        self._changed = changed
        self._cancelled = False
        self._fired = False
        self.failed = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the value changes (True) or ``timeout`` passes or cancel (False).

        Never raises: a failed re-read returns True, so the caller rescans.
        """
        notifier = self._notifier
        deadline = None if timeout is None else time.monotonic() + timeout
        checked = 0.0
        fruitless = 0
        while not self._fired:
            with notifier.changes:
                seen = notifier.count
            if self._cancelled:
                return False
            gap = time.monotonic() - checked
            spacing = recheck_spacing(fruitless)
            if gap < spacing:
                time.sleep(spacing - gap)
            checked = time.monotonic()
            try:
                changed = self._changed()
            except Exception:  # any failure is a reason to look again; see the module doc
                changed = self.failed = True
            if changed:
                self._fired = True
                break
            fruitless += 1
            pause = SAFETY_SECONDS if notifier.live else POLL_SECONDS
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
                if pause <= 0:
                    return False
            self._sleep(seen, pause)
        return True

    def _sleep(self, seen: int, timeout: float) -> None:
        """Until the notifier counts a write after ``seen``, cancel, or ``timeout``."""
        notifier = self._notifier
        with notifier.changes:
            notifier.changes.wait_for(
                lambda: notifier.count != seen or self._cancelled, timeout=timeout
            )

    def cancel(self) -> None:
        """Make a current or future :meth:`wait` return False at once. Thread-safe."""
        with self._notifier.changes:
            self._cancelled = True
            self._notifier.changes.notify_all()
