"""Listings survive corrupt records: ``queues``, ``dlq list`` and ``cron list``
skip a record that does not decode, name it by its key on stderr, and show the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import quick
from keyspace.layout import CRON, DEAD_LETTERS, POINTERS, queue_keys
from quick.cli import cli

JUNK = b"\xff\x00junk"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def _put(url: str, key: bytes, value: bytes) -> None:
    with quick.open(url) as db:
        db.transact(lambda tr: tr.set(key, value))


def _run(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _dead(url: str, queue: str, n: int) -> list[str]:
    with quick.open(url) as db:
        ids = [quick.enqueue(db, queue, "t", i, max_attempts=1) for i in range(n)]
        for claim in quick.claim(db, queue, "w", limit=n):
            quick.fail(db, claim, "boom")
    return ids


def test_cli_queues_skips_a_corrupt_pointer_and_a_wrong_width_counter(url: str) -> None:
    with quick.open(url) as db:
        for queue in ("a", "b", "c"):
            quick.enqueue(db, queue, "t", 1)
    _put(url, POINTERS.pack(("b",)), JUNK)
    _put(url, queue_keys("c").counter("ready"), b"\x01\x02\x03")
    for args in (["queues"], ["queues", "--json"]):
        result = _run(url, *args)
        assert result.exit_code == 0, result.output
        assert "warning: skipped corrupt record at queue pointer  queue='b'" in result.stderr
        assert "queue counter  queue='c'  state='ready'" in result.stderr
    rows = {row["queue"]: row["counts"] for row in json.loads(result.stdout)}
    assert set(rows) == {"a", "c"}
    assert rows["a"]["ready"] == 1
    assert rows["c"]["ready"] == 0  # the unreadable counter, left out


@pytest.mark.parametrize(
    "value",
    [JUNK, b"\x01\x93\x01\x02\x03", b"\x01\x82\xa5error\x07\xa2at\xa3now"],
    ids=["bad msgpack", "a list", "wrong-typed fields"],
)
def test_cli_dlq_list_shows_every_dead_letter_but_the_corrupt_one(url: str, value: bytes) -> None:
    good = _dead(url, "q", 3)
    _put(url, DEAD_LETTERS.pack(("q", "bad")), value)
    result = _run(url, "dlq", "list", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(row["job_id"] for row in json.loads(result.stdout)) == sorted(good)
    assert "skipped corrupt record at dead letter  queue='q'  job_id='bad'" in result.stderr
    text = _run(url, "dlq", "list")
    assert text.exit_code == 0
    assert all(job in text.stdout for job in good)


def test_cli_cron_list_names_a_corrupt_schedule_and_lists_the_rest(url: str) -> None:
    assert _run(url, "cron", "add", "nightly", "0 3 * * *", "q", "report").exit_code == 0
    _put(url, CRON.pack(("broken",)), JUNK)
    _put(url, CRON.pack(("typed",)), b"\x01\x81\xa4cron\x05")
    result = _run(url, "cron", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("nightly  '0 3 * * *' UTC  -> q/report")
    assert "skipped corrupt record at cron schedule  name='broken'" in result.stderr
    assert "skipped corrupt record at cron schedule  name='typed'" in result.stderr


def test_read_dead_names_skipped_keys_for_library_callers(url: str) -> None:
    from quick.inspection import read_dead

    _dead(url, "q", 1)
    _put(url, DEAD_LETTERS.pack(("q", "bad")), JUNK)
    with quick.open(url) as db:
        listing = read_dead(db)
        assert [d.queue_id for d in listing.items] == ["q"]
        assert [s.key for s in listing.skipped] == [DEAD_LETTERS.pack(("q", "bad"))]
        assert "unknown value format ff" in listing.skipped[0].reason
        assert len(quick.list_dead(db)) == 1


def test_read_listings_are_their_scans_split_into_items_and_skipped(url: str) -> None:
    from quick.corruption import CorruptRecord
    from quick.cron import scan_schedules
    from quick.inspection import read_dead, read_queues, read_schedules, scan_dead, scan_queues

    _dead(url, "q", 2)
    with quick.open(url) as db:
        quick.enqueue(db, "a", "t", 1)
        quick.enqueue(db, "b", "t", 1)
        quick.schedule(db, "nightly", "0 3 * * *", "q", "report", None)
    _put(url, DEAD_LETTERS.pack(("q", "bad")), JUNK)
    _put(url, POINTERS.pack(("b",)), JUNK)
    _put(url, CRON.pack(("broken",)), JUNK)
    with quick.open(url) as db:
        for read, scan in (
            (read_queues, scan_queues),
            (read_dead, scan_dead),
            (read_schedules, scan_schedules),
        ):
            scanned = scan(db)
            listing = read(db)
            corrupt = [c for c in scanned if isinstance(c, CorruptRecord)]
            assert listing.items == [item for item in scanned if item not in corrupt]
            assert listing.items, read.__name__
            skipped = [(s.key, s.reason) for s in listing.skipped]
            assert skipped == [(c.key, c.error) for c in corrupt]
            assert len(listing.skipped) == 1, read.__name__
