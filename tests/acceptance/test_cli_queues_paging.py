"""``quick queues`` on a big store: a bounded first page, ``--after`` for the next, and
``--limit 0`` for every queue, read and printed page by page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import quick
from quick import inspection
from quick.cli import cli

QUEUES = [f"q{i}" for i in range(7)]


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        quick.enqueue_many(db, [{"queue_id": q, "topic": "t", "payload": 0} for q in QUEUES])
    return url


def _names(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()[1:]]


def test_cli_queues_shows_a_page_and_names_the_next(url: str) -> None:
    first = CliRunner().invoke(cli, ["--db", url, "queues", "--limit", "3"])
    assert first.exit_code == 0, first.output
    assert _names(first.stdout) == QUEUES[:3]
    assert "quick queues --after 'q2'" in first.stderr
    second = CliRunner().invoke(cli, ["--db", url, "queues", "--limit", "3", "--after", "q2"])
    assert _names(second.stdout) == QUEUES[3:6]
    last = CliRunner().invoke(cli, ["--db", url, "queues", "--limit", "3", "--after", "q5"])
    assert _names(last.stdout) == QUEUES[6:]
    assert "more queues" not in last.stderr


def test_cli_queues_limit_zero_reads_every_page(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("quick.cli.queue.QUEUE_PAGE", 2)  # four pages of at most two
    result = CliRunner().invoke(cli, ["--db", url, "queues", "--limit", "0"])
    assert result.exit_code == 0, result.output
    assert _names(result.stdout) == QUEUES
    assert result.stdout.count("queue ") == 1  # one header, not one per page
    as_json = CliRunner().invoke(cli, ["--db", url, "queues", "--limit", "0", "--json"])
    assert [row["queue"] for row in json.loads(as_json.stdout)] == QUEUES
    limited = CliRunner().invoke(cli, ["--db", url, "queues", "--limit", "4", "--json"])
    assert [row["queue"] for row in json.loads(limited.stdout)] == QUEUES[:4]


def test_queue_pages_yields_each_page_as_read(url: str) -> None:
    with quick.open(url) as db:
        pages = inspection.queue_pages(db, page=3)
        first = next(pages)
        assert [row["queue"] for row in first.items] == QUEUES[:3]
        rest = [row["queue"] for listing in pages for row in listing.items]
    assert rest == QUEUES[3:]
