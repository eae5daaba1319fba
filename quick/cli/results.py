"""``quick result JOB_ID``: what a finished job's handler returned, waiting for it if asked."""

from __future__ import annotations

import click

import quick
from quick.cli.common import ID, NotFound, Refused, TimedOut, echo_json, open_store

__all__ = ["result_command"]


@click.command("result")
@click.argument("job_id", type=ID)
@click.option(
    "--timeout",
    type=click.FloatRange(0, 100 * 365 * 86_400),
    default=0,
    show_default=True,
    help="Seconds to wait for the job to finish (0: only look). Exit code 5 when it runs out.",
)
@click.option("--wait", is_flag=True, help="Wait as long as it takes (ignores --timeout).")
@click.option("--json", "as_json", is_flag=True, help="Print {job_id, result} as JSON.")
@click.pass_context
def result_command(
    ctx: click.Context, job_id: str, timeout: float, wait: bool, as_json: bool
) -> None:
    """Print the result of job JOB_ID (JSON; bytes as hex).

    Exits 1 when the job finished without one (dead-lettered, discarded, cancelled,
    moved), 4 when no such job is kept (never enqueued, or purged), 5 on timeout.
    """
    with open_store(ctx) as db:
        try:
            value = quick.result(db, job_id, timeout=None if wait else timeout)
        except quick.JobNotFound as error:
            raise NotFound(str(error)) from None
        except quick.ResultTimeout as error:
            raise TimedOut(str(error)) from None
        except quick.ResultUnavailable as error:
            raise Refused(str(error)) from None
    echo_json({"job_id": job_id, "result": value} if as_json else value)
