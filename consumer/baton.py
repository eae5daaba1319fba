"""The wake baton: of the idle consumers of one store on one host, one claims at once when woken.

Theory of operation
-------------------
Every enqueue bumps the store's wake key. If every idle consumer claimed as soon as its
watch of that key fired, each new job would set them all racing: with P worker
processes, P claim rounds for one job, the losers conflicting or backing off behind the
winner's queue lease. Instead the consumers of one store on one host pass a baton, an
exclusive ``flock`` on a small file in the temporary directory named by the store's
identity (:func:`keyspace.identity.store_identity`, hashed). Every idle consumer still
watches, but only the holder claims at once when its watch fires; another waits up to
:data:`FOLLOW_SECONDS` for the baton (a thread blocked in ``flock`` costs no CPU) and
then claims anyway. So a healthy holder claims each job alone, and the others look at
most once per :data:`FOLLOW_SECONDS` while jobs keep coming, finding nothing or what
the holder left; a holder that is descheduled, stopped or stuck delays a job by that
much at most.

A consumer keeps the baton while it has room for more claims, so a stream of short jobs
is picked up by one consumer, and gives it up when its slots are full or it stops
(:meth:`Baton.give_up`): a consumer waiting for it (blocked in ``flock``) takes over at
once. The kernel drops the lock of a process that dies, even by SIGKILL, so a crashed
holder leaves nobody waiting longer than that. A child forked by a handler inherits the
lock's file description; the lock then outlives its holder until the child exits, which
costs the others only the delay above.

Consumers on other hosts have batons of their own (one holder per host). Without
``flock`` (not POSIX) or without a lock file to open, :meth:`Baton.take` always succeeds:
every consumer claims at once, as before.

Threads: :meth:`take` blocks (call it from a worker thread); :meth:`give_up` and
:meth:`close` may be called from any thread and make a blocked :meth:`take` return
(False after :meth:`close`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading

try:
    import fcntl
except ImportError:  # not POSIX: no baton, every consumer claims at once
    fcntl = None  # type: ignore[assignment]

__all__ = ["FOLLOW_SECONDS", "Baton", "baton_path"]

log = logging.getLogger("quick.consumer")

#: How long a consumer without the baton waits for it after its watch fired before it
#: claims anyway: the most a stalled or descheduled holder delays a job, and, while jobs
#: keep coming, the least time between two claim rounds of a consumer without it (20 a
#: second at most, against one per job). Far above a healthy holder's claim (a few ms).
FOLLOW_SECONDS = 0.05


def baton_path(identity: str) -> str:
    """The lock file of the store whose identity is ``identity`` (hashed: the identity is
    read from the store, and never names a file itself)."""
    digest = hashlib.sha256(identity.encode("utf-8", "backslashreplace")).hexdigest()[:32]
    return os.path.join(tempfile.gettempdir(), f"quick-wake-{digest}.lock")


class Baton:
    """One consumer's side of the wake baton on the lock file ``path`` (None: no baton)."""

    def __init__(self, path: str | None) -> None:
        self._changes = threading.Condition()
        self._fd: int | None = None
        self._held = False
        self._wanted = False
        self._closed = False
        self._waiting = False  # a thread is blocked in flock on self._fd
        if path is None or fcntl is None:
            return
        try:
            # Read-only is enough for flock, so a file another user created serves too.
            self._fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            log.warning("no wake baton (%s): every idle consumer claims when woken", error)

    @property
    def held(self) -> bool:
        """Whether this consumer holds the baton (always True without one)."""
        return self._fd is None or self._held

    def take(self, timeout: float) -> bool:
        """Hold the baton, waiting up to ``timeout`` seconds; whether it is held.

        After a timeout the wish stands: the baton is taken as soon as it is free, until
        :meth:`give_up` or :meth:`close`.
        """
        with self._changes:
            if self._fd is None:
                return not self._closed
            if self._closed:
                return False
            self._wanted = True
            if not self._held and not self._waiting:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._held = True
                except OSError:
                    self._waiting = True
                    threading.Thread(
                        target=self._wait_for_lock, name="quick-baton", daemon=True
                    ).start()
            self._changes.wait_for(lambda: self._held or self._closed or not self._wanted, timeout)
            return self._held

    def give_up(self) -> None:
        """Let another consumer have the baton (and stop wishing for it)."""
        with self._changes:
            self._wanted = False
            self._release()
            self._changes.notify_all()

    def close(self) -> None:
        """Give the baton up for good: a blocked :meth:`take` returns False. Idempotent."""
        with self._changes:
            if self._closed:
                return
            self._closed = True
            self._wanted = False
            self._release()
            if self._fd is not None and not self._waiting:
                os.close(self._fd)  # a blocked waiter closes it on its way out instead
            self._changes.notify_all()

    def _release(self) -> None:
        if self._held and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._held = False

    def _wait_for_lock(self) -> None:
        """In a daemon thread: block in flock until the lock is ours, then keep it if it is
        still wanted, or let it go at once."""
        fd = self._fd
        assert fd is not None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            got = True
        except OSError:
            got = False
        with self._changes:
            self._waiting = False
            if got and self._wanted and not self._closed:
                self._held = True
            elif got:
                fcntl.flock(fd, fcntl.LOCK_UN)
            if self._closed:
                os.close(fd)
            self._changes.notify_all()
