"""Several processes on one store: serializability and versionstamp order hold across them."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from keyspace.protocol import Database
from keyspace.subspace import Subspace

PROCESSES = 4
PER_PROCESS = 500
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run_workers(command: str, url: str, space: Subspace, tmp_path: Path) -> None:
    go = tmp_path / "go"
    prefix = space.prefix[1]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.workers",
                command,
                url,
                prefix,
                str(p),
                str(PER_PROCESS),
                str(go),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        for p in range(PROCESSES)
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()


def test_engine_concurrent_read_modify_writes_give_exact_total(
    db: Database, url: str, space: Subspace, tmp_path: Path
) -> None:
    _run_workers("increment", url, space, tmp_path)
    value = db.transact(lambda tr: tr.get(space.pack(("counter",))))
    assert value is not None
    assert struct.unpack("<q", value)[0] == PROCESSES * PER_PROCESS


def test_engine_concurrent_versionstamped_appends_are_unique_and_ordered(
    db: Database, url: str, space: Subspace, tmp_path: Path
) -> None:
    _run_workers("append", url, space, tmp_path)
    rows = []
    begin, end = space.range(("log",))
    while True:
        page = db.transact(lambda tr, b=begin: tr.get_range(b, end, limit=1000))
        rows.extend(page)
        if len(page) < 1000:
            break
        begin = page[-1][0] + b"\x00"
    assert len(rows) == PROCESSES * PER_PROCESS
    stamps = [space.unpack(key)[1].tr_version for key, _ in rows]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    entries = [struct.unpack("<ii", value) for _, value in rows]
    assert sorted(entries) == [(p, i) for p in range(PROCESSES) for i in range(PER_PROCESS)]
    for p in range(PROCESSES):
        mine = [i for proc, i in entries if proc == p]
        assert mine == list(range(PER_PROCESS)), "a process's commits are stamped in order"
