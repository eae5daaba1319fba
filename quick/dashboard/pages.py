"""The read-only pages: overview, queue, job, dead letters, cron, runs, run.

Every route reads through the library's query functions and hands plain values to
its template. Names travel in query strings (``/queue?name=...``), never in paths, so
any queue or job id, slashes included, round-trips unchanged.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, render_template, request

from keyspace.layout import JOB_DIRECTORY, RESULTS, queue_keys
from quick.corruption import CorruptRecord
from quick.cron import scan_schedules
from quick.dashboard.dag import BOX_H, BOX_W, layout
from quick.dashboard.reads import FINISHED_CAP, QUEUE_WINDOW, decoded, read_overview
from quick.dashboard.state import state
from quick.errors import CorruptResult, ResultUnavailable
from quick.inspection import (
    get_dead,
    get_job,
    job_state,
    queue_counts,
    scan_dead,
    scan_jobs,
)
from quick.jobs import JobState
from quick.results import PENDING, look
from workflow.errors import CorruptRun, RunNotFound
from workflow.records import RunStatus
from workflow.views import explain_run, inspect_instances, inspect_run, page_runs

__all__ = ["pages"]

pages = Blueprint("pages", __name__)

#: Rows on one page of jobs, dead letters or runs, unless ``?limit=`` asks (at most MAX_ROWS).
ROWS = 100
MAX_ROWS = 1000

#: What a stored record that does not decode raises when read (the codec's error or a wrong shape).
UNDECODABLE = (ValueError, KeyError, TypeError, AttributeError)


def _text(name: str) -> str | None:
    value = request.args.get(name, "").strip()
    return value or None


def _required(name: str) -> str:
    value = _text(name)
    if value is None:
        abort(400, f"the {name!r} parameter is required")
    return value


def _limit() -> int:
    try:
        return max(1, min(int(request.args.get("limit", ROWS)), MAX_ROWS))
    except ValueError:
        abort(400, "limit must be a whole number")


def _corrupt(key: bytes, error: BaseException) -> CorruptRecord:
    return CorruptRecord(key=key, error=f"{type(error).__name__}: {error}")


@pages.get("/")
def overview() -> str:
    """Queues with work (a window by name, deepest first), throughput, oldest ready job."""
    after = _text("after")
    view = read_overview(state().db, g.now, after=after)
    return render_template(
        "overview.html", view=view, after=after, window=QUEUE_WINDOW, cap=FINISHED_CAP
    )


@pages.get("/queue")
def queue() -> str:
    """One queue's counts and its jobs in claim order."""
    name = _required("name")
    limit = _limit()
    db = state().db
    counts = queue_counts(db, name)
    jobs = scan_jobs(db, name, limit=limit)
    return render_template(
        "queue.html", name=name, counts=counts, jobs=jobs, limit=limit, decoded=decoded
    )


@pages.get("/job")
def job() -> str:
    """One job: state, payload, attempts, lease owner, last error; or its dead letter."""
    name = _required("queue")
    job_id = _required("id")
    db = state().db
    problems: list[CorruptRecord] = []
    found_state = record = None
    try:
        found_state = job_state(db, job_id)
    except UNDECODABLE as error:
        problems.append(_corrupt(JOB_DIRECTORY.pack((job_id,)), error))
    try:
        record = get_job(db, job_id)
    except UNDECODABLE as error:
        problems.append(_corrupt(queue_keys(name).job(job_id), error))
    dead = get_dead(db, name, job_id)
    if isinstance(dead, CorruptRecord):
        problems.append(dead)
        dead = None
    if found_state is None and record is None and dead is None and not problems:
        abort(404, f"no job {job_id!r} in queue {name!r} (finished jobs are kept for a day)")
    result = _result(db, job_id, found_state, problems)
    return render_template(
        "job.html",
        queue=name,
        job_id=job_id,
        state=found_state,
        job=record,
        dead=dead,
        problems=problems,
        result=result,
    )


def _result(db: Any, job_id: str, found: Any, problems: list[CorruptRecord]) -> dict[str, Any]:
    """A finished job's result (``value``) or why it has none (``reason``); {} otherwise."""
    if found not in (JobState.COMPLETED, JobState.DISCARDED):
        return {}
    try:
        value = db.transact(look, job_id)
    except CorruptResult as error:
        problems.append(CorruptRecord(key=RESULTS.pack((job_id,)), error=error.problem))
        return {}
    except ResultUnavailable as error:
        return {"reason": str(error)}
    except UNDECODABLE:
        return {}  # the directory entry: named above already
    return {} if value is PENDING else {"value": value}


@pages.get("/dead")
def dead() -> str:
    """Dead letters, of one queue or all, a page at a time by queue then job id."""
    name = _text("queue")
    after = _text("after") if name is not None else None
    limit = _limit()
    items = scan_dead(state().db, name, after=after, limit=limit)
    last = [item.job_id for item in items if not isinstance(item, CorruptRecord)]
    next_after = last[-1] if name is not None and len(items) >= limit and last else None
    return render_template(
        "dead.html", queue=name, items=items, limit=limit, next_after=next_after, decoded=decoded
    )


@pages.get("/cron")
def cron() -> str:
    """Cron schedules and their next fire times."""
    return render_template("cron.html", items=scan_schedules(state().db), decoded=decoded)


@pages.get("/runs")
def runs() -> str:
    """Workflow runs, filtered by workflow and status, a page at a time in index order."""
    workflow, status = _text("workflow"), _text("status")
    if status is not None and status not in {s.value for s in RunStatus}:
        abort(400, f"unknown status {status!r}")
    cursor = (_text("after_status"), _text("after_workflow"), _text("after_run"))
    after: tuple[str, str, str] | None = None
    if cursor[0] is not None and cursor[1] is not None and cursor[2] is not None:
        after = (cursor[0], cursor[1], cursor[2])
    limit = min(_limit(), 200)
    page = page_runs(state().db, workflow=workflow, status=status, after=after, limit=limit)
    return render_template(
        "runs.html",
        page=page,
        workflow=workflow,
        status=status,
        statuses=sorted(s.value for s in RunStatus),
        decoded=decoded,
    )


@pages.get("/run")
def run() -> str:
    """One run: its DAG with each step's state, the journal as a timeline, the explanation."""
    run_id = _required("id")
    try:
        view = inspect_run(state().db, run_id)
    except RunNotFound:
        abort(404, f"no run {run_id!r}")
    except CorruptRun as error:
        # The store and the other pages are fine: this page names the record (as the job
        # page does), it is no server error.
        problem = CorruptRecord(key=error.key, error=error.reason)
        return render_template("error.html", title=f"Corrupt run {run_id}", problems=[problem])
    steps: dict[str, Any] = dict(view.steps)
    drawing = layout(
        {key: step.after for key, step in steps.items()},
        {key: step.status for key, step in steps.items()},
    )
    # A map is one node with its counts; ?instances=KEY expands it (a page of instances).
    counts = {
        key: f"{(step.instances or {}).get('succeeded', 0)}/{sum(step.instances.values())}"
        for key, step in steps.items()
        if step.instances is not None
    }
    expanded = request.args.get("instances")
    instances = None
    if expanded in counts:
        start = request.args.get("start", "0")
        first = int(start) if start.isdigit() else 0
        instances = inspect_instances(state().db, run_id, expanded, start=first, limit=100)
    return render_template(
        "run.html",
        run=view,
        explanation=explain_run(state().db, run_id),
        drawing=drawing,
        box_w=BOX_W,
        box_h=BOX_H,
        counts=counts,
        expanded=expanded,
        instances=instances,
    )
