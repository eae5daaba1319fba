"""``quick limits ...``: per-queue and keyed limits set, listed and cleared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

import quick
from quick.cli.common import ID, open_store, usage_problem
from quick.limits import MAX_PER_SECOND, MAX_RUNNING

__all__ = ["limits"]

#: A queue id, or ``*`` for the default of queues without limits of their own.
QUEUE_HELP = "QUEUE is a queue id, or '*' for the default of every queue without its own."


def _values(max_running: int | None, max_per_second: float | None) -> str:
    running = "-" if max_running is None else str(max_running)
    rate = "-" if max_per_second is None else f"{max_per_second:g}"
    return f"max_running={running}  max_per_second={rate}"


def _show(item: quick.QueueLimits) -> str:
    return f"{item.queue_id}  {_values(item.max_running, item.max_per_second)}"


def _show_key(item: quick.KeyLimits) -> str:
    values = _values(item.max_running, item.max_per_second)
    return f"key {item.key}  {values}  running={item.running}"


def _queue(value: str) -> str:
    return value if value == "*" else ID.convert(value, None, None)


@click.group()
def limits() -> None:
    """Per-queue and keyed limits: jobs running at once and started per second, across all
    workers. A keyed limit is shared by every job naming its key (enqueue limit_keys=)."""


def _limit_options(whose: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--max-running`` and ``--max-per-second``, for the jobs ``whose`` names."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--max-per-second",
            type=float,
            help=f"Most jobs of {whose} started per second: at least 1/86400 (0.0000116, one "
            f"job a day; slower would freeze them), at most {MAX_PER_SECOND:,}.",
        )(command)
        return click.option(
            "--max-running",
            type=int,
            help=f"Most jobs of {whose} running at once: 1 to {MAX_RUNNING:,}.",
        )(command)

    return decorate


def _one_given(max_running: int | None, max_per_second: float | None) -> None:
    if max_running is None and max_per_second is None:
        raise click.UsageError("give --max-running, --max-per-second or both")


@limits.command("set", help=f"Set the limits of QUEUE (replacing its old ones). {QUEUE_HELP}")
@click.argument("queue")
@_limit_options("the queue")
@click.pass_context
def limits_set(
    ctx: click.Context, queue: str, max_running: int | None, max_per_second: float | None
) -> None:
    _one_given(max_running, max_per_second)
    with open_store(ctx) as db:
        try:
            item = quick.set_queue_limits(
                db, _queue(queue), max_running=max_running, max_per_second=max_per_second
            )
        except (ValueError, TypeError) as error:
            raise usage_problem(error) from None
    click.echo(_show(item))


@limits.command("list")
@click.pass_context
def limits_list(ctx: click.Context) -> None:
    """List every queue's limits, the default ('*') among them, then every keyed limit
    (lines starting 'key') with how many of its jobs are running."""
    with open_store(ctx) as db:
        items = quick.list_queue_limits(db)
        keyed = quick.list_key_limits(db)
    for item in items:
        click.echo(_show(item))
    for key_item in keyed:
        click.echo(_show_key(key_item))
    if not items and not keyed:
        click.echo("(no limits)")


@limits.command("clear", help=f"Remove the limits of QUEUE. {QUEUE_HELP}")
@click.argument("queue")
@click.pass_context
def limits_clear(ctx: click.Context, queue: str) -> None:
    with open_store(ctx) as db:
        try:
            quick.set_queue_limits(db, _queue(queue))
        except (ValueError, TypeError) as error:
            raise usage_problem(error) from None
    click.echo(f"cleared the limits of {queue}")


@limits.command(
    "set-key",
    help="Set the limits of limit key KEY (replacing its old ones), shared by every job "
    "naming KEY in its limit_keys, across queues and topics.",
)
@click.argument("key")
@_limit_options("those naming the key")
@click.pass_context
def limits_set_key(
    ctx: click.Context, key: str, max_running: int | None, max_per_second: float | None
) -> None:
    _one_given(max_running, max_per_second)
    with open_store(ctx) as db:
        try:
            item = quick.set_key_limits(
                db, key, max_running=max_running, max_per_second=max_per_second
            )
        except (ValueError, TypeError) as error:
            raise usage_problem(error) from None
    click.echo(_show_key(item))


@limits.command("clear-key", help="Remove the limits of limit key KEY (its jobs run unlimited).")
@click.argument("key")
@click.pass_context
def limits_clear_key(ctx: click.Context, key: str) -> None:
    with open_store(ctx) as db:
        try:
            quick.clear_key_limits(db, key)
        except (ValueError, TypeError) as error:
            raise usage_problem(error) from None
    click.echo(f"cleared the limits of key {key}")
