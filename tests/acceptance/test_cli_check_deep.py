"""``quick check --deep [--repair]``: every kind of corruption found, repaired, no job lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import quick
from keyspace.codec import pack_value
from keyspace.layout import (
    CRON,
    JOB_DIRECTORY,
    POINTER_INDEX,
    POINTERS,
    QUEUE_LEASES,
    queue_keys,
)
from keyspace.protocol import Database, Transaction
from quick.cli import cli

JUNK = b"\xff junk"


def _deep(url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--db", url, "check", "--deep", "--json", *extra])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output)


def _corrupt(db: Database) -> dict[str, list[str]]:
    """A store with one of each kind of corruption, and the jobs that must survive."""
    survivors = {q: [quick.enqueue(db, q, "t", i) for i in range(3)] for q in "abcdef"}
    ka, kb, kc = queue_keys("a"), queue_keys("b"), queue_keys("c")

    def body(tr: Transaction) -> None:
        tr.set(ka.job(survivors["a"][0]), JUNK)  # an undecodable job record
        tr.set(POINTERS.pack(("b",)), JUNK)  # an undecodable pointer
        tr.set(QUEUE_LEASES.pack(("c",)), pack_value({"ex": "x"}))  # a wrong-typed lease
        tr.set(POINTER_INDEX.pack((5,)), b"")  # a pointer-index key that does not unpack
        tr.set(POINTER_INDEX.pack((7, "d")), b"")  # a second pointer entry for d
        tr.set(kb.counter("ready"), b"\x01")  # a counter of the wrong width
        tr.set(kc.counter("leased"), (9).to_bytes(8, "little"))  # a counter that is off
        (entry, _), *_ = tr.get_range(*kc.ready_range())  # an entry disagreeing with its record
        priority, vis_ms, job_id = kc.unpack_ready(entry)
        tr.clear(entry)
        tr.set(kc.ready(priority + 1, vis_ms, job_id), b"")
        tr.set(kc.ready(0, 0, "ghost"), b"")  # an entry without a record
        tr.clear(POINTERS.pack(("e",)))  # a queue with jobs and no pointer record
        tr.set(CRON.pack(("broken",)), pack_value({"cr": "* * * * *"}))  # undecodable
        # a job in two places: queued, and finished
        tr.set(
            JOB_DIRECTORY.pack((survivors["f"][0],)),
            pack_value({"q": "f", "s": "completed", "at": 1, "k": None}),
        )

    db.transact(body)
    return survivors


def test_check_deep_finds_every_kind_and_repair_loses_no_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert _deep(url) == (0, {"keys": 0, "clean": True, "problems": []})
    with quick.open(url) as db:
        survivors = _corrupt(db)
    code, found = _deep(url)
    assert code == 1
    kinds = {(p["kind"], p["what"].split("  ")[0]) for p in found["problems"]}
    assert kinds >= {
        ("undecodable", "job"),
        ("undecodable", "queue pointer"),
        ("undecodable", "queue lease"),
        ("undecodable", "unknown quick key ('ix', 5)"),
        ("undecodable", "queue counter"),
        ("undecodable", "cron schedule"),
        ("stray pointer-index entry", "pointer index entry"),
        ("counter off", "queue counter"),
        ("index entry disagrees", "ready job"),
        ("index entry without record", "ready job"),
        ("record without index entry", "job"),
        ("queue without pointer", "queue pointer"),
        ("job in two places", "job directory"),
    }, kinds
    code, repaired = _deep(url, "--repair")
    left = {(p["kind"], p["what"]) for p in repaired["problems"] if not p["repaired"]}
    # What cannot be fixed without guessing stays reported: the schedule, the double job.
    assert {kind for kind, _ in left} == {"undecodable", "job in two places"}, left
    assert code == 1
    code, after = _deep(url)
    assert {p["kind"] for p in after["problems"]} == {"undecodable", "job in two places"}
    assert len(after["problems"]) == 2
    with quick.open(url) as db:
        # No job lost: every survivor is still queued, or dead-lettered raw (the corrupt one).
        for queue, ids in survivors.items():
            states = [quick.job_state(db, job_id) for job_id in ids]
            assert None not in states, (queue, states)
        (dead,) = quick.list_dead(db, "a")
        assert dead.job_id == survivors["a"][0]
        assert dead.raw == JUNK
        for queue in "abcde":
            counts = quick.queue_counts(db, queue)
            jobs = quick.list_jobs(db, queue)
            assert counts["ready"] + counts["scheduled"] + counts["leased"] == len(jobs)
