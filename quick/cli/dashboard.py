"""``quick dashboard``: serve the web UI (an optional extra, ``quick[dashboard]``)."""

from __future__ import annotations

import os

import click

from quick.cli.common import Unavailable, UsageProblem, open_store, sqlite_path, store_url

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
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host name browsers reach the dashboard by (repeatable; '.example.com' matches "
    "its subdomains). Required with --allow-actions off loopback; on loopback the loopback "
    "names are always allowed. A POST whose Origin or Referer names another host is refused.",
)
@click.pass_context
def dashboard(
    ctx: click.Context, host: str, port: int, allow_actions: bool, allowed_hosts: tuple[str, ...]
) -> None:
    """Serve the web dashboard: queues, jobs, dead letters, cron, workflow runs.

    The store must exist: a sqlite file that is not there is refused (exit 3), never
    created empty.
    """
    try:
        from quick.dashboard import serve, trusted_hosts  # Flask is an optional extra
    except ImportError as error:
        raise UsageProblem(f"{error}: pip install 'quick[dashboard]'") from None
    try:
        trusted_hosts(host, allowed_hosts, allow_actions=allow_actions)
    except ValueError as error:
        raise UsageProblem(str(error)) from None
    path = sqlite_path(store_url(ctx))
    if path is not None and not os.path.exists(path):
        raise Unavailable(f"no store at {path}: the dashboard shows a store, it never creates one")
    with open_store(ctx) as db:
        try:
            serve(
                db, host=host, port=port, allow_actions=allow_actions, allowed_hosts=allowed_hosts
            )
        except OSError as error:
            raise UsageProblem(f"cannot serve on {host}:{port}: {error}") from None
