"""``quick batches ...``: batches listed, shown (counts by outcome, members) and closed."""

from __future__ import annotations

import dataclasses

import click

import quick
from quick.batches import BatchStatus
from quick.cli.common import ID, LIMIT, NotFound, echo_json, open_store, when

__all__ = ["batches"]


def _line(status: BatchStatus) -> str:
    state = "open" if status.open else "done" if status.done else "closed"
    return (
        f"{status.batch_id}  {state}  queue={status.queue_id}  total={status.total}  "
        f"pending={status.pending}  completed={status.completed}  "
        f"discarded={status.discarded}  dead={status.dead}  cancelled={status.cancelled}"
    )


def _row(status: BatchStatus) -> dict[str, object]:
    return {**dataclasses.asdict(status), "done": status.done}


@click.group()
def batches() -> None:
    """Batches of jobs with callbacks: their counts by outcome and their members."""


@batches.command("list")
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="Most batches to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def batches_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List batches, oldest first, with their counts."""
    with open_store(ctx) as db:
        found = quick.list_batches(db, limit=limit)
    if as_json:
        echo_json([_row(status) for status in found])
        return
    for status in found:
        click.echo(_line(status))
    if not found:
        click.echo("(no batches)")


@batches.command("show")
@click.argument("batch_id", type=ID)
@click.option(
    "--members",
    type=click.IntRange(0, 10_000),
    default=20,
    show_default=True,
    help="Most members to list (0: none).",
)
@click.option("--after", type=ID, help="List members after this job id (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def batches_show(
    ctx: click.Context, batch_id: str, members: int, after: str | None, as_json: bool
) -> None:
    """Show BATCH_ID: open or closed, counts by outcome, callbacks, and its members' states."""
    with open_store(ctx) as db:
        try:
            status = quick.batch_status(db, batch_id)
            page = quick.batch_results(db, batch_id, after=after, limit=members) if members else []
        except quick.BatchNotFound:
            raise NotFound(f"no batch {batch_id!r}") from None
    if as_json:
        rows = [dataclasses.asdict(member) for member in page]
        echo_json({**_row(status), "members": rows})
        return
    click.echo(_line(status))
    click.echo(f"created {when(status.created_ms)}")
    for kind, job_id in sorted(status.callbacks.items()):
        click.echo(f"on_{kind}: job {job_id}")
    for member in page:
        click.echo(f"  {member.job_id}  {member.state}")


@batches.command("close")
@click.argument("batch_id", type=ID)
@click.pass_context
def batches_close(ctx: click.Context, batch_id: str) -> None:
    """Close BATCH_ID: no more members; its callbacks fire once every member settled."""
    with open_store(ctx) as db:
        try:
            closed = quick.close_batch(db, batch_id)
        except quick.BatchNotFound:
            raise NotFound(f"no batch {batch_id!r}") from None
    click.echo(f"closed batch {batch_id}" if closed else f"batch {batch_id} was closed already")
