"""``quick demo``: a mixed multi-tenant workload, drained with live progress."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from quick.cli.common import Refused, open_store

__all__ = ["demo"]


@click.command()
@click.option(
    "--tenants",
    default=50,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Tenant queues to spread jobs over.",
)
@click.option(
    "--jobs",
    default=2000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Jobs to enqueue.",
)
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Jobs run at once.",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0, 86_400, min_open=True),
    help="Stop after this many seconds.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON (exit 1 if unfinished)."
)
@click.pass_context
def demo(
    ctx: click.Context, tenants: int, jobs: int, concurrency: int, timeout: float, as_json: bool
) -> None:
    """Enqueue a mixed multi-tenant workload and drain it, with live progress.

    Priorities, delayed jobs, a flaky topic that succeeds on retry and a poison job that
    ends in the dead letters; then a summary. Runs on the --db store (default ./quick.db).
    Exits 1 if the workload did not drain within --timeout.
    """
    from consumer.demo import run_demo, summary

    live = sys.stdout.isatty() and not as_json

    def progress(result: Any, settled: int) -> None:
        if live:
            bar = int(30 * settled / max(result.enqueued, 1))
            click.echo(
                f"\r[{'#' * bar}{'.' * (30 - bar)}] {settled}/{result.enqueued} settled, "
                f"{result.outcomes['requeued']} retried, {result.outcomes['dead_lettered']} dead",
                nl=False,
            )

    with open_store(ctx) as db:
        click.echo(f"demo on {db.url}: {jobs} jobs across {tenants} tenants", err=as_json)
        result = run_demo(
            db,
            tenants=tenants,
            jobs=jobs,
            concurrency=concurrency,
            timeout=timeout,
            progress=progress,
        )
    if live:
        click.echo()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "enqueued": result.enqueued,
                    "finished": result.finished,
                    "elapsed_s": result.elapsed,
                    "outcomes": dict(result.outcomes),
                    "dead_letters": result.dead,
                }
            )
        )
    else:
        for line in summary(result):
            click.echo(line)
    if not result.finished:
        raise Refused("the demo did not finish within --timeout")
