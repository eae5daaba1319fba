"""``quick cron ...``: cron schedules listed, added and removed."""

from __future__ import annotations

import click

import quick
from quick.cli.common import (
    ID,
    NotFound,
    open_store,
    parse_payload,
    usage_problem,
    warn_skipped,
)
from quick.inspection import read_schedules

__all__ = ["cron"]


@click.group()
def cron() -> None:
    """Cron schedules: list, add, remove."""


@cron.command("list")
@click.pass_context
def cron_list(ctx: click.Context) -> None:
    """List schedules and when each next fires (a corrupt one is named on stderr)."""
    with open_store(ctx) as db:
        listing = read_schedules(db)
    warn_skipped(listing.skipped)
    for item in listing.items:
        click.echo(
            f"{item.name}  {item.cron!r} {item.tz}  -> {item.queue_id}/{item.topic}"
            f"  next_ms={item.next_ms}"
        )
    if not listing.items:
        click.echo("(no schedules)")


@cron.command("add")
@click.argument("name", type=ID)
@click.argument("expression")
@click.argument("queue", type=ID)
@click.argument("topic", type=ID)
@click.option("--payload", help="The payload as JSON.")
@click.option("--tz", default="UTC", show_default=True, help="IANA timezone of the expression.")
@click.pass_context
def cron_add(
    ctx: click.Context,
    name: str,
    expression: str,
    queue: str,
    topic: str,
    payload: str | None,
    tz: str,
) -> None:
    """Create or replace schedule NAME."""
    value = parse_payload(payload)
    with open_store(ctx) as db:
        try:
            item = quick.schedule(db, name, expression, queue, topic, value, tz=tz)
        except (ValueError, TypeError) as error:
            raise usage_problem(error) from None
    click.echo(f"{item.name} next fires at next_ms={item.next_ms}")


@cron.command("remove")
@click.argument("name", type=ID)
@click.pass_context
def cron_remove(ctx: click.Context, name: str) -> None:
    """Delete schedule NAME."""
    with open_store(ctx) as db:
        if not quick.remove_schedule(db, name):
            raise NotFound(f"no schedule {name!r}")
    click.echo(f"removed {name}")
