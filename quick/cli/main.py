"""The ``quick`` group: the ``--db`` option, and every command registered under it."""

from __future__ import annotations

from collections.abc import Iterator

import click

import keyspace
from quick.cli.common import DB_HELP, Settings, add_db_option
from quick.cli.cron import cron
from quick.cli.dashboard import dashboard
from quick.cli.demo import demo
from quick.cli.dlq import dlq
from quick.cli.inspect import check, inspect
from quick.cli.limits import limits
from quick.cli.migrate import migrate_command
from quick.cli.queue import enqueue, jobs, queues
from quick.cli.results import result_command
from quick.cli.runs import runs, signal_step
from quick.cli.worker import worker

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="QUICK_DB",
    default=keyspace.DEFAULT_URL,
    show_default=True,
    help=DB_HELP + " Also accepted after the subcommand.",
)
@click.pass_context
def cli(ctx: click.Context, db: str) -> None:
    """quick: a QuiCK-style job queue on FoundationDB (or an embedded SQLite file)."""
    ctx.obj = Settings(db=db)


for _command in (
    check,
    inspect,
    worker,
    enqueue,
    queues,
    jobs,
    result_command,
    dlq,
    cron,
    demo,
    runs,
    signal_step,
    dashboard,
    migrate_command,
    limits,
):
    cli.add_command(_command)


def _subcommands(group: click.Group) -> Iterator[click.Command]:
    """Every command below ``group``, subgroups and their commands included."""
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from _subcommands(command)


for _command in _subcommands(cli):
    add_db_option(_command)


def main() -> None:
    """Entry point of the ``quick`` console script."""
    cli(prog_name="quick")
