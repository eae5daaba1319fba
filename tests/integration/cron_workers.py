"""Cron activator processes for the cron tests: ``python -m tests.integration.cron_workers``.

Usage: ``cron_workers URL PROC PROCESSES SYNC_DIR TICK[,TICK...]``. Each process opens the
engine URL (fault-injecting URLs included), waits for ``SYNC_DIR/go`` so every process
starts together, then for each tick time T calls ``quick.activate_due(db, now=T)`` and
waits at a barrier (one file per process and tick in ``SYNC_DIR``) until every process
has finished T, so all of them race on every tick. It prints the job ids its own
activations returned, one JSON list per tick, on stdout, then a JSON object of the
faults injected in this process by error code (empty on engines without injection).
"""

from __future__ import annotations

import json
import os
import sys
import time

import quick

TIMEOUT_S = 60


def _wait_for(paths: list[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not all(os.path.exists(path) for path in paths):
        if time.monotonic() > deadline:
            missing = [path for path in paths if not os.path.exists(path)]
            raise SystemExit(f"gave up waiting for {missing}")
        time.sleep(0.002)


def main(argv: list[str]) -> None:
    url, proc, processes, sync_dir, ticks = argv
    db = quick.open(url)
    _wait_for([os.path.join(sync_dir, "go")])
    for number, tick in enumerate(int(t) for t in ticks.split(",")):
        ids = quick.activate_due(db, now=tick)
        print(json.dumps(ids), flush=True)
        with open(os.path.join(sync_dir, f"tick{number}-proc{proc}"), "w"):
            pass
        _wait_for([os.path.join(sync_dir, f"tick{number}-proc{p}") for p in range(int(processes))])
    print(json.dumps(getattr(db, "injected", {})), flush=True)
    db.close()


if __name__ == "__main__":
    main(sys.argv[1:])
