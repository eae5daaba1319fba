"""Cron schedules: every tick enqueued exactly once, however many activators race on it.

The multi-process test runs four real activator processes (``cron_workers.py``) that
call ``quick.activate_due(db, now=T)`` for the same tick times T, meeting at a barrier
after each tick so all four race on every one; on the fault-injecting engine each has
its own seed, and the first activation to write sees its commit applied and then
reported unknown. The rest are single-process checks of coalescing, validation, removal
and listing.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter

import quick
from keyspace.faults import FaultRates, FaultyDatabase
from keyspace.layout import CRON, QueueKeys
from keyspace.protocol import Database
from tests.conftest import engine_url

PROCESSES = 4
TICKS = 10
MINUTE_MS = 60_000
#: One fault seed per activator on the faulty engine; each one's first draw is a 1021
#: that applies the commit first, so the first activation to write is retried.
ACTIVATOR_SEEDS = (28, 79, 82, 87)
ROOT = Path(__file__).resolve().parents[2]

#: (name suffix, cron expression, timezone): every one fires on whole UTC minutes.
SCHEDULES = [
    ("every-minute", "* * * * *", "UTC"),
    ("even-minutes", "*/2 * * * *", "UTC"),
    ("every-third-kolkata", "*/3 * * * *", "Asia/Kolkata"),
    ("every-fourth-st-johns", "*/4 * * * *", "America/St_Johns"),
]


@pytest.fixture
def tag() -> str:
    """A prefix unique to the test (the fdb engine shares one keyspace)."""
    return uuid.uuid4().hex[:8]


def fires(expr: str, tz: str, first_ms: int, last_ms: int) -> list[int]:
    """The ticks of ``expr`` in ``tz`` from ``first_ms`` to ``last_ms`` (both inclusive),
    computed with croniter directly rather than through quick."""
    zone = zoneinfo.ZoneInfo(tz)
    start = dt.datetime.fromtimestamp((first_ms - 1) / 1000, tz=zone)
    it = croniter(expr, start)
    out = []
    while True:
        tick = int(it.get_next(dt.datetime).timestamp() * 1000)
        if tick > last_ms:
            return out
        out.append(tick)


def job_ids(db: Database, queue: str) -> list[str]:
    """The ids of the jobs stored in ``queue``, read from its key range."""
    keys = QueueKeys(queue)
    begin, end = keys.space["j"].range()
    rows = db.transact(lambda tr: tr.get_range(begin, end))
    return [keys.space["j"].unpack(key)[0] for key, _ in rows]


def schedule_named(db: Database, name: str) -> quick.Schedule | None:
    found = [s for s in quick.list_schedules(db) if s.name == name]
    return found[0] if found else None


# -- exactly once under four racing activators ---------------------------------------------


@pytest.mark.slow
def test_cron_each_tick_is_enqueued_exactly_once_by_four_racing_activators(
    db: Database, engine: str, tag: str, tmp_path: Path
) -> None:
    made = {
        f"{tag}-{suffix}": quick.schedule(
            db, f"{tag}-{suffix}", expr, f"cron-{tag}-{i}", "t", i, tz
        )
        for i, (suffix, expr, tz) in enumerate(SCHEDULES)
    }
    first = min(s.next_ms for s in made.values())
    assert first % MINUTE_MS == 0
    ticks = [first + k * MINUTE_MS for k in range(TICKS)]

    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.cron_workers",
                engine_url(engine, tmp_path, seed=ACTIVATOR_SEEDS[p]),
                str(p),
                str(PROCESSES),
                str(sync),
                ",".join(map(str, ticks)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for p in range(PROCESSES)
    ]
    (sync / "go").touch()
    returned: list[str] = []
    unknown_results = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        *lines, injected = out.decode().splitlines()
        assert len(lines) == TICKS
        returned.extend(i for line in lines for i in json.loads(line))
        unknown_results += json.loads(injected).get("1021", 0)
    if engine == "faulty-sqlite":
        # Whoever won the first tick had its commit applied and then reported as unknown.
        assert unknown_results >= 1

    expected_all: set[str] = set()
    for name, item in made.items():
        expected = {
            f"cron:{name}:{tick}" for tick in fires(item.cron, item.tz, item.next_ms, ticks[-1])
        }
        assert len(expected) >= TICKS // 4
        assert set(job_ids(db, item.queue_id)) == expected, name
        assert quick.queue_counts(db, item.queue_id)["ready"] == len(expected), name
        # The schedule has moved past the last tick, to its next one.
        after = schedule_named(db, name)
        assert after is not None
        assert after.next_ms == fires(item.cron, item.tz, ticks[-1] + 1, ticks[-1] + 3_600_000)[0]
        expected_all |= expected
    # No activation reported a job twice (a retry after an unknown commit result reports none).
    assert len(returned) == len(set(returned))
    assert set(returned) <= expected_all
    if engine != "faulty-sqlite":
        assert set(returned) == expected_all


# -- coalescing, validation, removal, listing ------------------------------------------------


def test_cron_missed_ticks_coalesce_into_one_job_and_next_run_counts_from_now(
    db: Database, tag: str
) -> None:
    name, queue = f"{tag}-nightly", f"cron-{tag}"
    made = quick.schedule(db, name, "* * * * *", queue, "report", {"n": 1})
    # Down for ten and a half minutes past the first tick: ten more ticks were missed.
    now = made.next_ms + 10 * MINUTE_MS + 30_000
    mine = [i for i in quick.activate_due(db, now=now) if i.startswith(f"cron:{name}:")]
    assert len(mine) == 1
    assert job_ids(db, queue) == mine
    after = schedule_named(db, name)
    assert after is not None
    assert after.next_ms == made.next_ms + 11 * MINUTE_MS  # the first tick after now
    # Activating again at the same time adds nothing.
    assert not [i for i in quick.activate_due(db, now=now) if i.startswith(f"cron:{name}:")]
    assert quick.queue_counts(db, queue)["ready"] == 1
    # The next tick fires as usual, and the jobs carry the schedule's topic and payload.
    assert quick.activate_due(db, now=after.next_ms) == [f"cron:{name}:{after.next_ms}"]
    claims = quick.claim(db, queue, "w", limit=10, now_ms=after.next_ms)
    assert [(c.topic, c.payload) for c in claims] == [("report", {"n": 1})] * 2


class FirstCommitFails(FaultyDatabase):
    """The first writing commit fails with ``code``, applied first when ``applied``, after
    ``meanwhile`` ran (as another activator would); every later commit succeeds."""

    def __init__(
        self, inner: Database, code: int, meanwhile: Any = None, *, applied: bool = True
    ) -> None:
        super().__init__(inner, FaultRates())
        self.code = code
        self.meanwhile = meanwhile
        self.applied = applied
        self.armed = True

    def draw(self) -> tuple[int | None, bool]:
        if not self.armed:
            return None, False
        self.armed = False
        self.injected[self.code] += 1
        if self.meanwhile is not None:
            self.meanwhile()
        return self.code, self.applied


def test_cron_activate_due_reports_the_tick_a_committed_try_fired_before_unknown_result(
    exact_db: Database, tag: str
) -> None:
    name, queue = f"{tag}-tick", f"cron-{tag}"
    made = quick.schedule(exact_db, name, "* * * * *", queue, "t", None)
    faulty = FirstCommitFails(exact_db, 1021)
    fired = quick.activate_due(faulty, now=made.next_ms)  # type: ignore[arg-type]
    assert faulty.injected[1021] == 1
    tick = f"cron:{name}:{made.next_ms}"
    assert job_ids(exact_db, queue) == [tick]
    assert [i for i in fired if i.startswith(f"cron:{name}:")] == [tick]


@pytest.mark.parametrize("code", [1020, 1021])
def test_cron_activate_due_whose_try_did_not_commit_leaves_the_tick_to_the_one_that_won(
    exact_db: Database, tag: str, code: int
) -> None:
    name, queue = f"{tag}-tick", f"cron-{tag}"
    made = quick.schedule(exact_db, name, "* * * * *", queue, "t", None)
    won: list[str] = []
    faulty = FirstCommitFails(
        exact_db,
        code,
        lambda: won.extend(quick.activate_due(exact_db, now=made.next_ms)),
        applied=False,
    )
    lost = quick.activate_due(faulty, now=made.next_ms)  # type: ignore[arg-type]
    tick = f"cron:{name}:{made.next_ms}"
    assert tick in won
    assert tick not in lost
    assert job_ids(exact_db, queue) == [tick]


@pytest.mark.parametrize("expr", ["not a cron", "61 * * * *", "* * *", "", None, 5])
def test_cron_malformed_expression_is_refused_by_name_and_writes_nothing(
    db: Database, tag: str, expr: object
) -> None:
    name = f"{tag}-bad"
    with pytest.raises(quick.InvalidArgument) as refused:
        quick.schedule(db, name, expr, f"cron-{tag}", "t", None)  # type: ignore[arg-type]
    assert refused.value.field == "cron_expr"
    assert db.transact(lambda tr: tr.get(CRON.pack((name,)))) is None
    assert schedule_named(db, name) is None


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "UTC+99", "../etc/passwd", "", None])
def test_cron_unknown_timezone_is_refused_by_name_and_writes_nothing(
    db: Database, tag: str, tz: object
) -> None:
    name = f"{tag}-bad-tz"
    with pytest.raises(quick.InvalidArgument) as refused:
        quick.schedule(db, name, "* * * * *", f"cron-{tag}", "t", None, tz=tz)  # type: ignore[arg-type]
    assert refused.value.field == "tz"
    assert db.transact(lambda tr: tr.get(CRON.pack((name,)))) is None
    assert schedule_named(db, name) is None


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *"])
def test_cron_expression_that_never_fires_is_refused_as_invalid_cron_expr(
    db: Database, tag: str, expr: str
) -> None:
    name = f"{tag}-never"
    with pytest.raises(quick.InvalidArgument) as refused:
        quick.schedule(db, name, expr, f"cron-{tag}", "t", None)
    assert refused.value.field == "cron_expr"
    assert schedule_named(db, name) is None


def test_cron_long_schedule_name_does_not_stop_other_schedules(db: Database, tag: str) -> None:
    short = quick.schedule(db, f"{tag}-short", "* * * * *", f"cron-{tag}", "t", None)
    long_name = f"{tag}-" + "n" * (256 - len(tag) - 1)
    refused: quick.InvalidArgument | None = None
    try:
        quick.schedule(db, long_name, "* * * * *", f"cron-{tag}", "t", None)
    except quick.InvalidArgument as error:  # refusing the name up front is also fine
        refused = error
    assert refused is None or refused.field == "name"
    ids = quick.activate_due(db, now=short.next_ms)
    assert f"cron:{short.name}:{short.next_ms}" in ids


def test_cron_every_due_schedule_fires_when_there_are_more_than_the_limit(
    exact_db: Database, tag: str
) -> None:
    db = exact_db
    tr = db.create_transaction()
    made = [
        quick.schedule(tr, f"{tag}-{i:04d}", "* * * * *", f"cron-{tag}", "t", i)
        for i in range(1_001)
    ]
    tr.commit()
    tick = max(s.next_ms for s in made)
    enqueued: list[str] = []
    for _ in range(3):
        enqueued += quick.activate_due(db, now=tick)
    assert len(enqueued) == 1_001


def test_cron_remove_schedule_stops_it_and_reports_whether_it_existed(
    db: Database, tag: str
) -> None:
    keep = quick.schedule(db, f"{tag}-keep", "* * * * *", f"cron-{tag}-keep", "t", None)
    drop = quick.schedule(db, f"{tag}-drop", "* * * * *", f"cron-{tag}-drop", "t", None)
    assert quick.remove_schedule(db, drop.name) is True
    assert quick.remove_schedule(db, drop.name) is False
    assert quick.remove_schedule(db, f"{tag}-never-existed") is False
    names = [s.name for s in quick.list_schedules(db)]
    assert keep.name in names
    assert drop.name not in names
    tick = max(keep.next_ms, drop.next_ms)
    ids = quick.activate_due(db, now=tick)
    assert f"cron:{keep.name}:{keep.next_ms}" in ids
    assert not [i for i in ids if i.startswith(f"cron:{drop.name}:")]
    assert job_ids(db, drop.queue_id) == []


def test_cron_list_schedules_returns_each_schedule_by_name_with_its_settings(
    db: Database, tag: str
) -> None:
    quick.schedule(db, f"{tag}-b", "*/5 * * * *", f"cron-{tag}", "tb", {"x": [1, 2]}, tz="UTC")
    quick.schedule(db, f"{tag}-a", "0 9 * * 1-5", f"cron-{tag}", "ta", "hi", tz="Europe/Berlin")
    quick.schedule(db, f"{tag}-c", "0 0 1 * *", f"cron-{tag}", "tc", None)
    # Scheduling a name again replaces it rather than adding a second schedule.
    replaced = quick.schedule(db, f"{tag}-c", "30 12 * * *", f"cron-{tag}-2", "tc2", 7)
    mine = [s for s in quick.list_schedules(db) if s.name.startswith(f"{tag}-")]
    assert [s.name for s in mine] == [f"{tag}-a", f"{tag}-b", f"{tag}-c"]
    a, b, c = mine
    assert (a.cron, a.tz, a.queue_id, a.topic, a.payload) == (
        "0 9 * * 1-5",
        "Europe/Berlin",
        f"cron-{tag}",
        "ta",
        "hi",
    )
    assert (b.cron, b.tz, b.topic, b.payload) == ("*/5 * * * *", "UTC", "tb", {"x": [1, 2]})
    assert c == replaced
    assert (c.cron, c.queue_id, c.topic, c.payload) == ("30 12 * * *", f"cron-{tag}-2", "tc2", 7)
    # next_ms is the schedule's next tick in its own timezone.
    berlin = dt.datetime.fromtimestamp(a.next_ms / 1000, tz=zoneinfo.ZoneInfo("Europe/Berlin"))
    assert (berlin.hour, berlin.minute, berlin.second) == (9, 0, 0)
    assert berlin.weekday() < 5
    assert b.next_ms % (5 * MINUTE_MS) == 0
