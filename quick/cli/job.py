"""``quick job`` and ``quick cancel``: one job by id, and cancelling it (running or not)."""

from __future__ import annotations

from typing import Any

import click

import quick
from quick.cli.common import ID, NotFound, echo_json, open_store
from quick.jobs import Job, JobState, now_ms

__all__ = ["job", "cancel"]


def job_view(job_id: str, state: JobState | None, record: Job | None) -> dict[str, Any]:
    """What ``quick job`` shows of one job: its state, and its record while it waits or runs."""
    view: dict[str, Any] = {"job_id": job_id, "state": state.value if state else None}
    if record is None:
        return view
    progress = record.progress
    view |= {
        "queue": record.queue,
        "topic": record.topic,
        "priority": record.priority,
        "attempt": record.attempt,
        "max_attempts": record.max_attempts,
        "owner": record.owner,
        "visible_in_s": max(0.0, (record.vis_ms - now_ms()) / 1000),
        "last_error": record.last_error,
        "cancel_requested": record.cancel_requested,
        "progress": None
        if progress is None
        else {"fraction": progress.fraction, "text": progress.text, "at_ms": progress.at_ms},
        "payload": record.payload,
    }
    return view


@click.command()
@click.argument("job_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def job(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """One job: its state and, while it waits or runs, its queue, topic, attempts,
    lease owner, progress and last error (finished jobs are kept for a day)."""
    with open_store(ctx) as db:
        state = quick.job_state(db, job_id)
        record = quick.get_job(db, job_id)
    if state is None and record is None:
        raise NotFound(f"no job {job_id!r} (finished jobs are kept for a day)")
    view = job_view(job_id, state, record)
    if as_json:
        echo_json(view)
        return
    for name, value in view.items():
        if name == "progress" and value is not None:
            value = f"{value['fraction']:.0%} {value['text']}".rstrip()
        if name == "cancel_requested":
            value = "yes: it stops, then ends cancelled" if value else None
        if value is not None and name != "payload":
            click.echo(f"{name.replace('_', ' ')}: {value}")


@click.command()
@click.argument("job_id", type=ID)
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel JOB_ID: a waiting job is removed; a running one is stopped by its worker
    and ends cancelled, never retried."""
    with open_store(ctx) as db:
        if not quick.cancel(db, job_id):
            raise NotFound(f"no job {job_id!r} to cancel (unknown, or finished otherwise)")
        state = quick.job_state(db, job_id)
    running = state is JobState.LEASED
    click.echo(f"{job_id}: {'cancel requested (running)' if running else 'cancelled'}")
