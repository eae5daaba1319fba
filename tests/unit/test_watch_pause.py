"""The pause after a failed watch: FoundationDB's backoff, as a pure function of the failures."""

from __future__ import annotations

from pathlib import Path

import pytest

import keyspace
from keyspace.retry import watch_retry_pause


def test_watch_retry_pause_is_none_without_a_failure() -> None:
    assert watch_retry_pause(0, 0.99) == 0.0


def test_watch_retry_pause_doubles_from_10_ms_up_to_one_second() -> None:
    ceilings = [watch_retry_pause(failures, 1.0) for failures in range(1, 10)]
    assert ceilings == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0])
    assert watch_retry_pause(10_000, 1.0) == 1.0


def test_watch_retry_pause_is_jittered_and_bounded_by_the_time_left() -> None:
    assert watch_retry_pause(8, 0.25) == pytest.approx(0.25)
    assert watch_retry_pause(8, 0.0) == 0.0
    assert watch_retry_pause(8, 1.0, remaining=0.3) == pytest.approx(0.3)
    assert watch_retry_pause(8, 1.0, remaining=-2.0) == 0.0


def test_sqlite_watch_that_fails_says_so(tmp_path: Path) -> None:
    db = keyspace.open(f"sqlite:///{tmp_path / 'w.db'}")
    watch = db.create_transaction().watch(b"k")
    assert watch.failed is False
    db.close()  # the watch's re-read now fails
    assert watch.wait(1.0) is True
    assert watch.failed is True


def test_watch_recheck_spacing_is_eager_then_doubles_to_its_cap() -> None:
    from keyspace import watches

    eager = [watches.recheck_spacing(n) for n in range(watches.EAGER_RECHECKS)]
    assert eager == [watches.MIN_RECHECK_SECONDS] * watches.EAGER_RECHECKS
    later = [watches.recheck_spacing(watches.EAGER_RECHECKS + n) for n in range(3)]
    assert later == [
        watches.MIN_RECHECK_SECONDS * 2,
        watches.MIN_RECHECK_SECONDS * 4,
        watches.MIN_RECHECK_SECONDS * 8,
    ]
    assert watches.recheck_spacing(1_000) == watches.MAX_RECHECK_SECONDS


def test_watch_recheck_spacing_stays_at_its_cap_however_long_nothing_changes() -> None:
    """A watch of a key nobody writes (the cancel counter) re-reads it for as long as a
    worker lives: the spacing must not overflow (it raised OverflowError past ~1,030
    fruitless re-reads, and the worker died every two minutes)."""
    from keyspace import watches

    for fruitless in (1_030, 1_100, 10**6, 10**12):
        assert watches.recheck_spacing(fruitless) == watches.MAX_RECHECK_SECONDS
