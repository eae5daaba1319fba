"""A cron activator process for the exactly-once test (``-m tests.integration.cron_activators``).

Waits for the go file, then calls ``quick.activate_due`` for each tick time given, so
every process races every other on every tick.
"""

from __future__ import annotations

import os
import sys
import time

import quick


def main(url: str, go: str, ticks: str) -> None:
    db = quick.open(url)
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("go file never appeared")
        time.sleep(0.002)
    for tick in map(int, ticks.split(",")):
        quick.activate_due(db, now=tick)
    db.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
