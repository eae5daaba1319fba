"""``quick dashboard``: serve the web UI (an optional extra, ``quick[dashboard]``)."""

from __future__ import annotations

import click

from quick.cli.common import UsageProblem, open_store

__all__ = ["dashboard"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--port",
    default=8900,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to serve on.",
)
@click.option("--allow-actions", is_flag=True, help="Show requeue/purge forms (else read-only).")
@click.pass_context
def dashboard(ctx: click.Context, host: str, port: int, allow_actions: bool) -> None:
    """Serve the web dashboard: queues, jobs, dead letters, cron, workflow runs."""
    try:
        from quick.dashboard import serve  # Flask is an optional extra
    except ImportError as error:
        raise UsageProblem(f"{error}: pip install 'quick[dashboard]'") from None
    with open_store(ctx) as db:
        try:
            serve(db, host=host, port=port, allow_actions=allow_actions)
        except OSError as error:
            raise UsageProblem(f"cannot serve on {host}:{port}: {error}") from None
