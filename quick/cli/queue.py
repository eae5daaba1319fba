"""``quick enqueue``, ``quick queues`` and ``quick jobs``: putting work on queues and
seeing what waits there."""

from __future__ import annotations

from typing import Any

import click

import quick
from quick.cli.common import (
    ID,
    LIMIT,
    MAX_DELAY_SECONDS,
    NotFound,
    echo_json,
    open_store,
    parse_payload,
    usage_problem,
    warn_skipped,
)
from quick.inspection import QUEUE_PAGE, queue_pages
from quick.jobs import DEFAULT_PRIORITY, now_ms

__all__ = ["enqueue", "queues", "jobs"]

#: Queues ``quick queues`` shows unless told otherwise: a store of a million tenants
#: answers at once, and ``--after`` pages on.
DEFAULT_QUEUES = 1000


@click.command()
@click.argument("queue", type=ID)
@click.argument("topic", type=ID)
@click.option("--payload", help="The job's payload as JSON.")
@click.option(
    "--delay",
    type=click.FloatRange(0, MAX_DELAY_SECONDS),
    help="Seconds until the job becomes visible (at most about 100 years).",
)
@click.option("--priority", default=DEFAULT_PRIORITY, show_default=True, help="Lower runs first.")
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 1_000_000),
    help="Attempts before dead-lettering.",
)
@click.option(
    "--limit-key",
    "limit_keys",
    multiple=True,
    help="A keyed limit the job counts against (see 'quick limits set-key'); repeatable.",
)
@click.pass_context
def enqueue(
    ctx: click.Context,
    queue: str,
    topic: str,
    payload: str | None,
    delay: float | None,
    priority: int,
    max_attempts: int | None,
    limit_keys: tuple[str, ...],
) -> None:
    """Put one job on QUEUE for TOPIC and print its id."""
    value = parse_payload(payload)
    with open_store(ctx) as db:
        try:
            job_id = quick.enqueue(
                db,
                queue,
                topic,
                value,
                priority=priority,
                delay=delay,
                max_attempts=max_attempts,
                limit_keys=list(limit_keys),
            )
        except (ValueError, TypeError) as error:
            raise usage_problem(error) from None
    click.echo(job_id)


@click.command()
@click.option(
    "--limit",
    default=DEFAULT_QUEUES,
    show_default=True,
    type=click.IntRange(0),
    help="Most queues to show (0: every one, printed page by page as it is read).",
)
@click.option("--after", metavar="QUEUE", help="Start after this queue name (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def queues(ctx: click.Context, limit: int, after: str | None, as_json: bool) -> None:
    """Queues with work, by name, and their job counts by state."""
    rows: list[dict[str, Any]] = []  # kept for --json and the page's end; printed rows are not
    shown, last, more = 0, None, False
    with open_store(ctx) as db:
        page = QUEUE_PAGE if not limit else min(limit + 1, QUEUE_PAGE)
        for listing in queue_pages(db, after=after, page=page):
            warn_skipped(listing.skipped)
            wanted = listing.items if not limit else listing.items[: limit + 1 - shown]
            if limit and shown + len(wanted) > limit:
                more, wanted = True, wanted[: limit - shown]
            if as_json:
                rows += wanted
            else:
                _print_queues(wanted, header=not shown)
            shown += len(wanted)
            last = wanted[-1]["queue"] if wanted else last
            if more:
                break
    if as_json:
        echo_json(rows)
    elif not shown:
        click.echo("(no queues)")
    if more:
        hint = f"more queues: quick queues --after {last!r} (or --limit 0 for all)"
        click.echo(hint, err=True)


def _print_queues(rows: list[dict[str, Any]], *, header: bool) -> None:
    if header and rows:
        click.echo(f"{'queue':<32} {'ready':>7} {'sched':>7} {'leased':>7} {'dead':>7}")
    for row in rows:
        c = row["counts"]
        click.echo(
            f"{row['queue']:<32} {c['ready']:>7} {c['scheduled']:>7} "
            f"{c['leased']:>7} {c['dead']:>7}"
        )


@click.command()
@click.argument("queue", type=ID)
@click.option("--limit", default=100, show_default=True, type=LIMIT, help="Most jobs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs(ctx: click.Context, queue: str, limit: int, as_json: bool) -> None:
    """Jobs waiting or running in QUEUE: ready ones best first, then by visibility."""
    with open_store(ctx) as db:
        found = quick.list_jobs(db, queue, limit=limit)
    now = now_ms()
    rows = [
        {
            "job_id": job.id,
            "state": job.visible_state(now).value,
            "topic": job.topic,
            "priority": job.priority,
            "visible_in_s": max(0.0, (job.vis_ms - now) / 1000),
            "attempt": job.attempt,
            "owner": job.owner,
            "last_error": job.last_error,
            "progress": None if job.progress is None else job.progress.fraction,
        }
        for job in found
    ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        raise NotFound(f"queue {queue!r} has no waiting or running jobs")
    for row in rows:
        when = f"in {row['visible_in_s']:.1f}s" if row["visible_in_s"] else "now"
        click.echo(
            f"{row['job_id']}  {row['state']:<9} {row['topic']:<20} prio {row['priority']:<5} "
            f"visible {when:<9} attempt {row['attempt']}"
            + (f"  progress {row['progress']:.0%}" if row["progress"] is not None else "")
            + (f"  last error: {row['last_error']}" if row["last_error"] else "")
        )
