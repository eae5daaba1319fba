"""WAL checkpoints off the commit path: one background thread per open sqlite database.

SQLite's automatic checkpoint runs inside the COMMIT of whichever transaction pushes the
write-ahead log past its threshold, so one commit in a few hundred pays for copying
every page written since into the database file, which slows single-job enqueues
markedly and is the worst of the tail latencies. Instead a daemon thread
runs a PASSIVE checkpoint (it never blocks readers or writers, and gives up a page a
reader still needs until the next round) every :data:`INTERVAL` seconds while commits
happen. SQLite's own automatic checkpoint stays on, at :data:`BACKSTOP_PAGES`, in case
this thread falls behind; the log file is truncated back to :data:`TRUNCATE_BYTES`
whenever a checkpoint finishes with nothing left in it. A log past :data:`RESTART_FRAMES`
(readers never all idle at once) gets a RESTART checkpoint, which waits for them, and
holds writers back while it does, for at most :data:`RESTART_WAIT_MS` (with the
connections' 30 s busy timeout, a commit now and then stalled for 30 s behind it in
``tests/integration/test_wal_restart.py``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable

__all__ = [
    "Checkpointer",
    "INTERVAL",
    "BACKSTOP_PAGES",
    "RESTART_FRAMES",
    "RESTART_WAIT_MS",
    "TRUNCATE_BYTES",
]

#: Seconds between background checkpoints while there are commits to copy.
INTERVAL = 0.2
#: Pages the log may hold before a committing transaction checkpoints after all
#: (SQLite's default is 1,000, about 4 MB): about 40 MB.
BACKSTOP_PAGES = 10_000
#: Bytes the log file is cut back to after a complete checkpoint (``journal_size_limit``).
TRUNCATE_BYTES = 16 * 1024 * 1024
#: Frames in the log past which a RESTART checkpoint follows the PASSIVE one (about
#: 256 MB). The log starts over only at a moment when no reader uses it; while some
#: thread of some process always holds a read snapshot (two workers draining a million
#: tenants) that moment never comes and the log grew past 1.6 GB. RESTART holds back
#: writers until the readers of the moment finish (each lives at most 5 s; new ones read
#: the database file), so the next commit starts the log over.
RESTART_FRAMES = 65_536
#: How long a RESTART checkpoint waits for the readers of the moment (writers wait
#: meanwhile): a quick read transaction is over in milliseconds; one that is not makes
#: the RESTART give up until the next round rather than stall every writer.
RESTART_WAIT_MS = 200


class Checkpointer:
    """Checkpoints one database file in the background while ``commits()`` keeps rising."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], commits: Callable[[], int]):
        self._connect = connect
        self._commits = commits
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quick-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        done = self._commits()
        try:
            while not self._stop.wait(INTERVAL):
                now = self._commits()
                if now == done:
                    continue
                done = now
                with contextlib.suppress(sqlite3.Error):  # busy or closing: try next round
                    conn = conn or self._connect()
                    (_, frames, _) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > RESTART_FRAMES:
                        self._restart(conn)
        finally:
            if conn is not None:
                conn.close()

    def _restart(self, conn: sqlite3.Connection) -> None:
        """A RESTART checkpoint that waits for the readers of the moment only briefly."""
        (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            conn.execute(f"PRAGMA busy_timeout={timeout}")

    def close(self) -> None:
        """Stop the thread (it finishes a checkpoint in progress first)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
