"""Pages for finding things: a job by id, a queue's jobs by topic and state, the chart of
jobs finished per minute, and the limits (per queue and keyed).

Like :mod:`quick.dashboard.pages`, every route reads through the library and hands plain
values to its template; names travel in query strings. The chart is SVG drawn by the
server (:func:`chart`): the page runs no script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import JOB_DIRECTORY, queue_keys
from keyspace.protocol import Transaction
from quick.corruption import CorruptRecord
from quick.dashboard.reads import decoded
from quick.dashboard.state import state
from quick.inspection import scan_dead
from quick.jobs import Job, JobState
from quick.key_limits import list_key_limits
from quick.limits import list_queue_limits
from quick.throughput import MINUTE_MS, MinuteCount, finished_per_minute

__all__ = [
    "explore",
    "SCAN_BUDGET",
    "STATES",
    "JobsPage",
    "read_jobs_page",
    "Bar",
    "Chart",
    "chart",
]

explore = Blueprint("explore", __name__)

#: Job records one page of ``/jobs`` reads at most while filtering: nothing indexes jobs
#: by topic, so a page is a bounded scan of the queue's records by id, and says where it
#: stopped when it filled no page (the next page resumes there).
SCAN_BUDGET = 2_000
#: Rows on one page of ``/jobs``.
PAGE_ROWS = 50
#: The states ``/jobs`` filters by: a job's visible state, or ``dead`` (its dead letters).
STATES = ("ready", "scheduled", "leased", "dead")


@explore.get("/find")
def find() -> Response | str | tuple[str, int]:
    """A job by id alone: its directory entry names its queue, then its page."""
    job_id = request.args.get("id", "").strip()
    if not job_id:
        return render_template("find.html", job_id="", problem=None)
    db = state().db
    key = JOB_DIRECTORY.pack((job_id,))
    data = db.transact(lambda tr: tr.get(key))
    if data is None:
        message = f"no job {job_id!r} (finished jobs are kept for a day)"
        return render_template("find.html", job_id=job_id, problem=message), 404
    try:
        entry = unpack_value(data)
        queue = entry["q"] if isinstance(entry, dict) else None
        if not isinstance(queue, str):
            raise CorruptValue(f"directory entry of the wrong shape: {entry!r}")
    except (ValueError, KeyError, TypeError) as error:
        problem = CorruptRecord(key=key, error=f"{type(error).__name__}: {error}")
        return render_template("error.html", title=f"Corrupt job {job_id}", problems=[problem])
    return redirect(url_for("pages.job", queue=queue, id=job_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsPage:
    """One page of a queue's jobs matching a topic and state: ``resume`` is the job id the
    next page starts after (None: the queue's records are all read)."""

    items: list[Job | CorruptRecord]
    scanned: int
    resume: str | None


def read_jobs_page(
    tr: Transaction,
    queue: str,
    now: int,
    *,
    topic: str | None = None,
    job_state: str | None = None,
    after: str | None = None,
    rows: int = PAGE_ROWS,
    budget: int = SCAN_BUDGET,
) -> JobsPage:
    """Up to ``rows`` jobs of ``queue`` with ``topic`` and (visible) ``job_state`` (None:
    any), by job id after ``after``, reading at most ``budget`` records (one snapshot)."""
    if job_state == JobState.DEAD.value:
        return _dead_page(tr, queue, topic, after, rows, budget)
    keys = queue_keys(queue)
    begin, end = keys.space["j"].range()
    if after is not None:
        begin = keys.job(after) + b"\x00"
    items: list[Job | CorruptRecord] = []
    scanned, last = 0, None
    for key, value in tr.snapshot.get_range(begin, end, limit=budget):
        scanned += 1
        try:
            (job_id,) = keys.space["j"].unpack(key)
            last = str(job_id)
            job = Job.from_value(queue, last, value)
        except (ValueError, TypeError) as error:  # CorruptValue is a ValueError
            items.append(CorruptRecord.of(key, error))
            continue
        if (topic is None or job.topic == topic) and (
            job_state is None or job.visible_state(now).value == job_state
        ):
            items.append(job)
            if len(items) >= rows:
                break
    full = len(items) >= rows or scanned >= budget
    return JobsPage(items=items, scanned=scanned, resume=last if full else None)


def _dead_page(
    tr: Transaction, queue: str, topic: str | None, after: str | None, rows: int, budget: int
) -> JobsPage:
    items: list[Job | CorruptRecord] = []
    letters = scan_dead(tr, queue, after=after, limit=budget)
    last = None
    for scanned, letter in enumerate(letters, 1):
        if isinstance(letter, CorruptRecord):
            items.append(letter)
            continue
        last = letter.job_id
        if letter.job is not None and (topic is None or letter.job.topic == topic):
            items.append(letter.job.evolve(state=JobState.DEAD))
            if len(items) >= rows:
                return JobsPage(items=items, scanned=scanned, resume=last)
    full = len(letters) >= budget
    return JobsPage(items=items, scanned=len(letters), resume=last if full else None)


@explore.get("/jobs")
def jobs() -> str:
    """A queue's jobs filtered by topic and state, a page at a time by job id."""
    queue = request.args.get("queue", "").strip()
    if not queue:
        abort(400, "the 'queue' parameter is required")
    topic = request.args.get("topic", "").strip() or None
    job_state = request.args.get("state", "").strip() or None
    if job_state is not None and job_state not in STATES:
        abort(400, f"unknown state {job_state!r}: one of {', '.join(STATES)}")
    after = request.args.get("after", "").strip() or None
    page = state().db.transact(
        lambda tr: read_jobs_page(tr, queue, g.now, topic=topic, job_state=job_state, after=after)
    )
    return render_template(
        "jobs.html",
        queue=queue,
        topic=topic,
        job_state=job_state,
        states=STATES,
        page=page,
        budget=SCAN_BUDGET,
        decoded=decoded,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One minute's bar: its place and height in the drawing, and what it stands for."""

    x: int
    y: int
    height: int
    minute_ms: int
    finished: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """A bar chart of jobs finished per minute, in SVG user units."""

    width: int
    height: int
    top: int
    bar_width: int
    bars: list[Bar]
    peak: int
    total: int
    ticks: list[tuple[int, str]]


def chart(counts: list[MinuteCount], *, bar_width: int = 12, height: int = 160) -> Chart:
    """Lay ``counts`` out as bars (pure: the template draws them); the tallest bar fills
    the height, and every tenth minute is labelled with its distance from now."""
    peak = max((c.finished for c in counts), default=0)
    top = 10
    bars = []
    for i, count in enumerate(counts):
        tall = round((height - top) * count.finished / peak) if peak else 0
        bars.append(
            Bar(
                x=i * bar_width,
                y=height - tall,
                height=tall,
                minute_ms=count.minute_ms,
                finished=count.finished,
            )
        )
    n = len(counts)
    ticks = [(i * bar_width, f"-{n - 1 - i}m" if i < n - 1 else "now") for i in range(0, n, 10)]
    if n and ticks[-1][1] != "now":
        ticks.append(((n - 1) * bar_width, "now"))
    return Chart(
        width=n * bar_width,
        height=height,
        top=top,
        bar_width=bar_width,
        bars=bars,
        peak=peak,
        total=sum(c.finished for c in counts),
        ticks=ticks,
    )


@explore.get("/throughput")
def throughput() -> str:
    """Jobs finished per minute over the last hour: every queue, and one (``?queue=``)."""
    queue = request.args.get("queue", "").strip() or None
    db = state().db

    def body(tr: Transaction) -> tuple[Chart, Chart | None]:
        overall = chart(finished_per_minute(tr.snapshot, g.now))
        mine = chart(finished_per_minute(tr.snapshot, g.now, queue=queue)) if queue else None
        return overall, mine

    overall, mine = db.transact(body)
    return render_template(
        "throughput.html", overall=overall, mine=mine, queue=queue, minute_ms=MINUTE_MS
    )


@explore.get("/limits")
def limits() -> str:
    """Per-queue limits and keyed limits, each key with how many of its jobs run now."""
    db = state().db
    queue_limits: list[Any] = list_queue_limits(db)
    return render_template("limits.html", queue_limits=queue_limits, key_limits=list_key_limits(db))
