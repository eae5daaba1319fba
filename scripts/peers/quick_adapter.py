"""quick on its embedded SQLite engine, as a peer of the harness in ``../shared/bench/peers``.

The harness (its README, "An adapter kept outside this folder") imports this module by name
from ``BENCH_EXTRA_PATH`` in its driver and per-run children; ``quick worker --app
quick_adapter:app`` imports it again in the worker processes, which is why the app is
defined at import time and nothing is opened until ``setup()``. From the project root (the
harness writes its results and scratch files next to itself, so it runs from a copy)::

    cp -r ../shared/bench /tmp/peer-bench
    /tmp/peer-bench/peers/setup.sh                     # the harness venv, once
    /tmp/peer-bench/.venv/bin/pip install -e .         # quick into that venv
    BENCH_EXTRA_PATH=$PWD/scripts/peers:$PWD BENCH_EXTRA_PEERS=quick=quick_adapter \\
        /tmp/peer-bench/.venv/bin/python /tmp/peer-bench/peers/run.py \\
        --peers quick,huey-redis,huey-sqlite,procrastinate --reps 3

The workers run the code of the checkout this file sits in (its root comes first on their
``PYTHONPATH``); the driver side does too when that root is also on ``BENCH_EXTRA_PATH``.
The job body is the harness's ``record(job_id, t_enqueue)`` and nothing else; the payload
carries both. Each run gets a fresh database file in its own ``BENCH_SCRATCH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchlib.adapter import Adapter, venv_tool
from benchlib.record import record

import quick

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent
DB_PATH = Path(os.environ.get("BENCH_SCRATCH") or tempfile.gettempdir()) / "quick.db"
URL = f"sqlite:///{DB_PATH}"
QUEUE = "bench"
TOPIC = "bench:noop"

app = quick.App()


@app.job(TOPIC)
def noop(payload: Any, meta: quick.Meta) -> None:
    record(payload["id"], payload["t"])


def _commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


class QuickSqlite(Adapter):
    NAME = "quick"
    PACKAGES = ("quick", "trio", "msgpack")
    BULK_API = "quick.enqueue_many(db, specs): one transaction per call"
    C2_DESC = (
        "`quick worker --processes 2` (a supervisor and 2 consumer processes, each with its "
        "defaults: --concurrency 8 jobs in flight, --batch-size 10 per claim)"
    )
    C8_DESC = "`quick worker --concurrency 8` (one process: trio, sync handlers in threads)"
    LATENCY_DESC = (
        "no polling: an idle consumer waits on a watch of a wake key that every enqueue bumps "
        "(and on the next scheduled job's time, at most 1 s)"
    )

    def __init__(self) -> None:
        self.db: Any = None

    def setup(self) -> None:
        for path in DB_PATH.parent.glob(DB_PATH.name + "*"):
            path.unlink()
        self.db = quick.open(URL)

    def teardown(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def enqueue_one(self, job_id: int, t_enq: float) -> None:
        quick.enqueue(self.db, QUEUE, TOPIC, {"id": job_id, "t": t_enq})

    def enqueue_many(self, jobs: list[tuple[int, float]]) -> None:
        quick.enqueue_many(
            self.db,
            [{"queue_id": QUEUE, "topic": TOPIC, "payload": {"id": j, "t": t}} for j, t in jobs],
        )

    def pending(self) -> int:
        counts = quick.queue_counts(self.db, QUEUE)
        return counts["ready"] + counts["scheduled"] + counts["leased"]

    def worker_commands(self, concurrency: int) -> list[list[str]] | None:
        # The harness sets PYTHONPATH to its own folder; `env` puts this checkout and this
        # folder first (it execs, so the harness still signals the quick process itself).
        inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), str(HERE), *inherited]))
        env = shutil.which("env") or "/usr/bin/env"
        base = [env, f"PYTHONPATH={path}", venv_tool("quick"), "--db", URL, "worker"]
        base += ["--app", "quick_adapter:app", "--log-level", "warning"]  # as for every peer
        if concurrency == 2:
            return [[*base, "--processes", "2"]]
        if concurrency == 8:
            return [[*base, "--concurrency", "8"]]
        return None

    def settings(self) -> dict[str, str]:
        return {
            "engine": "embedded sqlite, one file (WAL, synchronous=normal: a commit survives "
            "kill -9, not an OS crash)",
            "db": URL,
            "code": f"{PROJECT_ROOT} at {_commit()}",
            "worker": "quick worker defaults (--concurrency 8, --batch-size 10, "
            "--lease-seconds 30) and --log-level warning",
        }


ADAPTER = QuickSqlite()
