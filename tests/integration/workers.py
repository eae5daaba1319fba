"""Worker processes for the multi-process engine tests: ``python -m tests.integration.workers``.

Each command opens the engine URL it is given (fault-injecting URLs included), waits
for the go file so every process starts together, and does its share of the work
with the idempotency recipe, so retries after commit_unknown_result apply once.
"""

from __future__ import annotations

import os
import struct
import sys
import time

import keyspace
from keyspace.protocol import Transaction
from keyspace.subspace import Subspace, Versionstamp


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit("go file never appeared")
        time.sleep(0.005)


def increment(tr: Transaction, space: Subspace, proc: int, i: int) -> None:
    """Read-modify-write one shared counter (serializable read, not an atomic op)."""
    marker = space.pack(("done", proc, i))
    if tr.get(marker) is not None:
        return
    counter = space.pack(("counter",))
    value = tr.get(counter)
    total = struct.unpack("<q", value)[0] if value else 0
    tr.set(counter, struct.pack("<q", total + 1))
    tr.set(marker, b"")


def append(tr: Transaction, space: Subspace, proc: int, i: int) -> None:
    """Append one versionstamped log entry carrying (proc, i)."""
    marker = space.pack(("done", proc, i))
    if tr.get(marker) is not None:
        return
    tr.set_versionstamped_key(
        space.pack_with_versionstamp(("log", Versionstamp())), struct.pack("<ii", proc, i)
    )
    tr.set(marker, b"")


def main(argv: list[str]) -> None:
    command, url, prefix, proc, count, go = argv
    space = Subspace(("test", prefix))
    body = {"increment": increment, "append": append}[command]
    db = keyspace.open(url)
    _wait_for(go)
    for i in range(int(count)):
        db.transact(body, space, int(proc), i)
    db.close()


if __name__ == "__main__":
    main(sys.argv[1:])
