"""Cron: each tick enqueued exactly once however many activators race; bad input refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import quick
from keyspace.protocol import Database
from keyspace.subspace import Subspace
from quick.cron import next_fire_ms

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60_000
BASE = 1_800_000_000_000 - (1_800_000_000_000 % (60 * MINUTE))  # on the hour


def _set_next(db: Database, name: str, next_ms: int) -> None:
    """Move a schedule's next run to a fixed tick (tests drive time explicitly)."""
    (item,) = [s for s in quick.list_schedules(db) if s.name == name]
    quick.cron._put(db, quick.Schedule(**{**quick.cron._fields(item), "next_ms": next_ms}))


@pytest.mark.slow
def test_cron_four_activator_processes_enqueue_each_tick_once(
    db: Database, url: str, space: Subspace, tmp_path: Path
) -> None:
    tag = space.prefix[1][:8]
    names = [f"every-minute-{tag}-{i}" for i in range(3)]
    for name in names:
        quick.schedule(db, name, "* * * * *", f"cron-{tag}", "tick", {"from": name})
        _set_next(db, name, BASE)
    ticks = [BASE + i * MINUTE for i in range(10)]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.cron_activators",
                url,
                str(go),
                ",".join(map(str, ticks)),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    counts = quick.queue_counts(db, f"cron-{tag}")
    assert sum(counts.values()) == len(names) * len(ticks)
    for name in names:
        for tick in ticks:
            assert quick.job_state(db, f"cron:{name}:{tick}") is quick.JobState.READY


def test_cron_missed_ticks_coalesce_into_one_run(db: Database, space: Subspace) -> None:
    tag = space.prefix[1][:8]
    name = f"five-{tag}"
    quick.schedule(db, name, "*/5 * * * *", f"cron-{tag}", "tick", None)
    _set_next(db, name, BASE)
    late = BASE + 47 * MINUTE + 30_000
    assert quick.activate_due(db, now=late) == [f"cron:{name}:{BASE}"]
    (item,) = [s for s in quick.list_schedules(db) if s.name == name]
    assert item.next_ms == BASE + 50 * MINUTE
    assert quick.activate_due(db, now=late + 1_000) == []
    assert sum(quick.queue_counts(db, f"cron-{tag}").values()) == 1


def test_cron_respects_the_timezone() -> None:
    after = 1_774_659_600_000  # 2026-03-28 01:00 UTC, the day before Paris moves to summer time
    fire = next_fire_ms("0 3 * * *", "Europe/Paris", after)
    assert fire == 1_774_659_600_000 + 1 * 3_600_000
    assert next_fire_ms("0 3 * * *", "Europe/Paris", fire) == fire + 23 * 3_600_000


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("n", "61 * * * *", "q", "t", {}), "cron_expr"),
        (("n", "every day", "q", "t", {}), "cron_expr"),
        (("n", "* * * * *", "", "t", {}), "queue_id"),
        (("", "* * * * *", "q", "t", {}), "name"),
    ],
)
def test_cron_bad_schedules_are_refused_by_name(
    db: Database, args: tuple[object, ...], field: str
) -> None:
    with pytest.raises(quick.InvalidArgument) as caught:
        quick.schedule(db, *args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert quick.list_schedules(db) == []


def test_cron_unknown_timezone_is_refused(db: Database) -> None:
    with pytest.raises(quick.InvalidArgument) as caught:
        quick.schedule(db, "n", "* * * * *", "q", "t", {}, tz="Mars/Olympus")
    assert caught.value.field == "tz"
    assert quick.list_schedules(db) == []


def test_cron_list_and_remove(db: Database, space: Subspace) -> None:
    tag = space.prefix[1][:8]
    quick.schedule(db, f"a-{tag}", "0 * * * *", "q", "t", {"x": 1})
    quick.schedule(db, f"b-{tag}", "30 2 * * 1", "q", "t", None, tz="America/New_York")
    names = [s.name for s in quick.list_schedules(db)]
    assert names == [f"a-{tag}", f"b-{tag}"]
    assert quick.remove_schedule(db, f"a-{tag}") is True
    assert quick.remove_schedule(db, f"a-{tag}") is False
    assert [s.name for s in quick.list_schedules(db)] == [f"b-{tag}"]
