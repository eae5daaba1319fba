"""``quick dlq ...``: dead letters listed, requeued and purged."""

from __future__ import annotations

import click

import quick
from quick.cli.common import ID, NotFound, echo_json, open_store, warn_skipped
from quick.inspection import read_dead
from quick.operations import purge_all_dead

__all__ = ["dlq"]


@click.group()
def dlq() -> None:
    """Dead letters: list, requeue, purge."""


@dlq.command("list")
@click.option("--queue", type=ID, help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dlq_list(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """List dead letters (a corrupt one is named on stderr and skipped)."""
    with open_store(ctx) as db:
        listing = read_dead(db, queue)
    warn_skipped(listing.skipped)
    rows = [
        {
            "queue": d.queue_id,
            "job_id": d.job_id,
            "topic": d.job.topic if d.job else None,
            "error": d.error,
            "failed_ms": d.failed_ms,
        }
        for d in listing.items
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['queue']}  {row['job_id']}  {row['topic']}  {row['error']}")
    if not rows:
        click.echo("(no dead letters)")


@dlq.command("requeue")
@click.argument("queue", type=ID)
@click.argument("job_id", type=ID)
@click.pass_context
def dlq_requeue(ctx: click.Context, queue: str, job_id: str) -> None:
    """Put a dead letter back on its queue."""
    with open_store(ctx) as db:
        try:
            click.echo(quick.requeue_dead(db, queue, job_id))
        except quick.JobNotFound:
            raise NotFound(f"no dead letter {job_id} in queue {queue}") from None


@dlq.command("purge")
@click.option("--queue", type=ID, help="Only this queue.")
@click.pass_context
def dlq_purge(ctx: click.Context, queue: str | None) -> None:
    """Delete every dead letter (of one queue, or all), 1,000 per transaction."""
    with open_store(ctx) as db:
        click.echo(f"purged {purge_all_dead(db, queue)}")
