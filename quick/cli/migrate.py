"""``quick migrate --to URL [QUEUE ...]``: move queues with their work to another store."""

from __future__ import annotations

import time

import click

from keyspace.errors import StorageError
from quick.cli.common import ID, Refused, Unavailable, UsageProblem, echo_json, open_store, open_url
from quick.errors import InvalidArgument
from quick.migration import BATCH_JOBS, MigrationReport, migrate

__all__ = ["migrate_command"]

#: Seconds between passes while leased jobs settle on the source: short, since a
#: pass over queues with nothing left costs a few reads.
PASS_WAIT = 0.5


@click.command("migrate")
@click.argument("queues", nargs=-1, type=ID)
@click.option(
    "--to",
    "destination",
    required=True,
    help="URL of the store to move the queues to (sqlite:///path or fdb://...).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds to keep passing while consumers on the source hold leased jobs, or "
    "another quick migrate run is moving a queue.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=BATCH_JOBS,
    show_default=True,
    help="Jobs per copy transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def migrate_command(
    ctx: click.Context,
    queues: tuple[str, ...],
    destination: str,
    timeout: float,
    batch_size: int,
    as_json: bool,
) -> None:
    """Move QUEUEs (all when none is named) from --db to --to, with their ready and
    scheduled jobs, dead letters, unique keys and cron schedules.

    Producers and consumers may keep running on the source: each queue is marked moved
    first (an enqueue there then fails naming the new store), jobs a consumer holds move
    once they settle, and a job is claimable in exactly one store at any moment. Safe to
    interrupt and rerun. A queue that already exists on the destination is merged (job
    ids dedupe). A queue with a workflow run in flight is refused: a run's journal is
    ordered by its own cluster's commit versions and cannot move while steps settle;
    finish or cancel the run first (finished runs stay on the source as history).

    Two runs at once never lose or duplicate a job: each queue moves under a lease in
    both stores, and a run waits (up to --timeout) for a queue another run is moving.
    Finished jobs' ids move too (within their retention), so they still dedupe.

    Exits 0 when everything moved, 1 when a queue was refused or jobs were still leased
    (or another run still moving a queue) at --timeout (rerun to continue), 2 for a bad
    URL, an unknown queue, or a destination that is the source under another name, 3
    when a store cannot be used.
    """
    if not destination.strip():
        raise UsageProblem("--to is empty; name the destination store, e.g. sqlite:///./new.db")
    with open_store(ctx) as source, open_url(destination) as dest:
        deadline = time.monotonic() + timeout
        total = MigrationReport()
        try:
            while True:
                total = total.plus(migrate(source, dest, queues or None, batch_size=batch_size))
                if total.finished or total.refused or time.monotonic() >= deadline:
                    break
                time.sleep(PASS_WAIT)
        except InvalidArgument as error:
            raise UsageProblem(str(error)) from None
        except StorageError as error:
            raise Unavailable(f"migration stopped: {error} (nothing is lost; rerun)") from None
    _show(total, as_json)
    if total.refused:
        raise Refused(f"{len(total.refused)} refusal(s); see above")
    if total.busy:
        raise Refused(
            f"{len(total.busy)} queue(s) still being moved by another quick migrate after "
            f"{timeout:g} s: {', '.join(total.busy)}; rerun quick migrate to continue"
        )
    if total.remaining:
        raise Refused(
            f"{total.remaining} job(s) still on the source ({total.leased} leased) "
            f"after {timeout:g} s; rerun quick migrate to continue"
        )


def _show(report: MigrationReport, as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "queues": list(report.queues),
                "jobs": report.jobs,
                "dead_letters": report.dead_letters,
                "unique_keys": report.unique_keys,
                "cron_schedules": report.cron_schedules,
                "duplicates": report.duplicates,
                "leased": report.leased,
                "remaining": report.remaining,
                "tombstones": report.tombstones,
                "busy": list(report.busy),
                "refused": [{"queue": r.queue, "reason": r.reason} for r in report.refused],
            }
        )
        return
    click.echo(
        f"moved {len(report.queues)} queue(s): {report.jobs} job(s), "
        f"{report.dead_letters} dead letter(s), {report.unique_keys} unique key(s), "
        f"{report.cron_schedules} cron schedule(s), {report.tombstones} finished job id(s); "
        f"{report.duplicates} duplicate(s) dropped"
    )
    for refusal in report.refused:
        click.echo(f"refused {refusal.queue}: {refusal.reason}", err=True)
