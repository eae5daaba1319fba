"""The ``quick`` command line: a thin click group over the library.

Every command takes ``--db`` (or ``$QUICK_DB``; default ``sqlite:///./quick.db``).
quick's own errors become messages and non-zero exit codes, never tracebacks.
"""

from __future__ import annotations

import json
import struct
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import click

import keyspace
from keyspace import layout
from keyspace.errors import EngineUnavailable, InvalidURL, QuickError
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Versionstamp
from quick.cli_workflow import runs, signal_step

__all__ = ["main", "cli"]


class UsageProblem(click.ClickException):
    """A mistake in how quick was called (exit code 2)."""

    exit_code = 2


class NotFound(click.ClickException):
    """The named thing does not exist (exit code 4)."""

    exit_code = 4


class Unavailable(click.ClickException):
    """The store cannot be reached or used (exit code 3)."""

    exit_code = 3


@contextmanager
def _database(ctx: click.Context) -> Iterator[Database]:
    url = ctx.obj["db"]
    try:
        db = keyspace.open(url)
    except InvalidURL as error:
        raise UsageProblem(str(error)) from None
    except EngineUnavailable as error:
        raise Unavailable(str(error)) from None
    try:
        yield db
    except QuickError as error:
        raise click.ClickException(str(error)) from None
    finally:
        db.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="QUICK_DB",
    default=keyspace.DEFAULT_URL,
    show_default=True,
    help="Database URL: sqlite:///path/to/file.db, fdb:// or fdb:///path/to/fdb.cluster.",
)
@click.pass_context
def cli(ctx: click.Context, db: str) -> None:
    """quick: a QuiCK-style job queue on FoundationDB (or an embedded SQLite file)."""
    ctx.obj = {"db": db}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Round-trip keys through the store and report what each step saw.

    Writes a few keys under a scratch prefix, reads them back (point, range, atomic
    add, versionstamp), then clears them: a quick health check of an engine.
    """
    with _database(ctx) as db:
        report = _round_trip(db)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"store      {db.url}")
    for step, outcome in report["steps"].items():
        click.echo(f"{step:<10} {outcome}")
    click.echo(f"ok: {report['transactions']} transactions in {report['elapsed_ms']:.1f} ms")


def _round_trip(db: Database) -> dict[str, Any]:
    scratch = layout.ROOT["check"][uuid.uuid4().hex]
    steps: dict[str, str] = {}
    started = time.perf_counter()

    def write(tr: Transaction) -> Any:
        for i in range(10):
            tr.set(scratch.pack(("k", i)), f"value {i}".encode())
        tr.add(scratch.pack(("counter",)), struct.pack("<q", 41))
        tr.set_versionstamped_key(
            scratch.pack_with_versionstamp(("vs", Versionstamp())), b"stamped"
        )
        return tr.get_versionstamp()

    stamp = db.transact(write).wait()
    steps["write"] = f"10 keys, a counter and a versionstamped key at {stamp.hex()}"

    def read(tr: Transaction) -> tuple[bytes | None, int, bytes | None, int]:
        tr.add(scratch.pack(("counter",)), struct.pack("<q", 1))
        value = tr.get(scratch.pack(("k", 3)))
        rows = tr.get_range(*scratch.range(("k",)))
        counter = tr.get(scratch.pack(("counter",)))
        stamped = tr.get_range(*scratch.range(("vs",)))
        return value, len(rows), counter, len(stamped)

    value, count, counter, stamped = db.transact(read)
    total = struct.unpack("<q", counter or bytes(8))[0]
    steps["read"] = f"k3={value!r}, {count} keys in range, counter={total}, {stamped} stamped"

    def clear(tr: Transaction) -> int:
        tr.clear_range(*scratch.range())
        return len(tr.get_range(*scratch.range()))

    left = db.transact(clear)
    steps["clear"] = f"{left} keys left under the scratch prefix"
    if value != b"value 3" or count != 10 or total != 42 or stamped != 1 or left != 0:
        raise click.ClickException(f"round trip saw unexpected results: {steps}")
    elapsed = (time.perf_counter() - started) * 1000
    return {"url": db.url, "steps": steps, "transactions": 3, "elapsed_ms": elapsed}


@cli.group()
def inspect() -> None:
    """Look inside the store."""


@inspect.command("keyspace")
@click.option("--prefix", default="", help="Only keys whose decoded line contains this text.")
@click.option("--raw", is_flag=True, help="Show raw keys and values (hex) beside their meaning.")
@click.option("--limit", default=1000, show_default=True, help="Stop after this many keys.")
@click.pass_context
def inspect_keyspace(ctx: click.Context, prefix: str, raw: bool, limit: int) -> None:
    """Decode every quick key into what it means."""
    begin, end = layout.ROOT.range()
    shown = 0
    with _database(ctx) as db:
        for key, value in _scan(db, begin, end):
            line = layout.describe(key)
            if prefix and prefix not in line:
                continue
            if raw:
                line = f"{line}\n    key={key.hex()} value={value[:64].hex()}"
            click.echo(line)
            shown += 1
            if shown >= limit:
                break
    if shown == 0:
        click.echo("(no quick keys)")


def _scan(db: Database, begin: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every pair in [begin, end), a page per transaction (no transaction outlives 5 s)."""

    def page(tr: Transaction, start: bytes) -> list[tuple[bytes, bytes]]:
        return tr.snapshot.get_range(start, end, limit=500)

    start = begin
    while True:
        rows = db.transact(page, start)
        yield from rows
        if len(rows) < 500:
            return
        start = rows[-1][0] + b"\x00"


def _load_app(spec: str) -> Any:
    """``module:attribute`` -> the App it names; UsageProblem when it does not resolve."""
    import importlib

    from quick.app import App

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageProblem(f"--app {spec!r}: write module:attribute, e.g. myproject.jobs:app")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageProblem(f"--app {spec!r}: cannot import {module_name}: {error}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise UsageProblem(f"--app {spec!r}: {attribute} is not a quick.App")
    return app


@cli.command()
@click.option(
    "--app", "app_spec", required=True, help="The quick.App to serve, as module:attribute."
)
@click.option("--concurrency", default=8, show_default=True, help="Jobs run at once per process.")
@click.option("--batch-size", default=10, show_default=True, help="Most jobs leased per claim.")
@click.option(
    "--lease-seconds",
    default=30.0,
    show_default=True,
    help="Lease length; extended while a job runs.",
)
@click.option("--processes", default=1, show_default=True, help="Consumer processes to supervise.")
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    help="Seconds running jobs get to finish on shutdown.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics at http://HOST:PORT/metrics. With --processes P, "
    "process i (0..P-1) serves on PORT+i.",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Address the metrics server binds (with --metrics-port).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr: text (key=value fields) or json (one object per line).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Least severe log level shown; info logs every job attempt.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    app_spec: str,
    concurrency: int,
    batch_size: int,
    lease_seconds: float,
    processes: int,
    grace: float,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
    log_level: str,
) -> None:
    """Run consumers until SIGINT/SIGTERM (a second signal exits at once).

    Each settled job attempt is logged with its queue, topic, job_id, attempt, outcome,
    duration and error.
    """
    if min(concurrency, batch_size, processes) < 1 or lease_seconds <= 0:
        raise UsageProblem(
            "--concurrency, --batch-size, --processes and --lease-seconds must be positive"
        )
    if metrics_port is not None and metrics_port + processes - 1 > 65535:
        raise UsageProblem(f"--metrics-port {metrics_port}: PORT+{processes - 1} is past 65535")
    if processes > 1:
        from consumer.supervisor import supervise

        argv = ["--db", ctx.obj["db"], "worker", "--app", app_spec]
        argv += ["--concurrency", str(concurrency), "--batch-size", str(batch_size)]
        argv += ["--lease-seconds", str(lease_seconds), "--grace", str(grace)]
        argv += ["--log-format", log_format, "--log-level", log_level]
        argvs = [
            argv
            if metrics_port is None
            else [*argv, "--metrics-port", str(metrics_port + i), "--metrics-host", metrics_host]
            for i in range(processes)
        ]
        raise SystemExit(supervise(argvs))
    app = _load_app(app_spec)
    from consumer import logs
    from consumer.runtime import ConsumerConfig
    from consumer.serve import serve

    logs.configure(log_format, log_level.upper())
    config = ConsumerConfig(
        concurrency=concurrency,
        batch_size=batch_size,
        lease_ms=round(lease_seconds * 1000),
        grace=grace,
    )
    with _database(ctx) as db, ExitStack() as stack:
        metrics = None
        if metrics_port is not None:
            from consumer.metrics import ConsumerMetrics, serve_metrics

            metrics = ConsumerMetrics()
            try:
                stack.enter_context(serve_metrics(metrics, metrics_port, metrics_host))
            except OSError as error:
                raise UsageProblem(
                    f"--metrics-port {metrics_port}: cannot serve on {metrics_host}: {error}"
                ) from None
        outcomes = serve(db, app, config, metrics)
    logs.log_stopped(dict(outcomes))


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageProblem(f"--payload is not valid JSON: {error}") from None


@cli.command()
@click.argument("queue")
@click.argument("topic")
@click.option("--payload", help="The job's payload as JSON.")
@click.option("--delay", type=float, help="Seconds until the job becomes visible.")
@click.option("--priority", default=100, show_default=True, help="Lower runs first.")
@click.option("--max-attempts", type=int, help="Attempts before dead-lettering.")
@click.pass_context
def enqueue(
    ctx: click.Context,
    queue: str,
    topic: str,
    payload: str | None,
    delay: float | None,
    priority: int,
    max_attempts: int | None,
) -> None:
    """Put one job on QUEUE for TOPIC and print its id."""
    import quick

    value = _payload(payload)
    with _database(ctx) as db:
        try:
            job_id = quick.enqueue(
                db, queue, topic, value, priority=priority, delay=delay, max_attempts=max_attempts
            )
        except (ValueError, TypeError) as error:
            raise UsageProblem(str(error)) from None
    click.echo(job_id)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Queues with work, and their job counts by state."""
    import quick

    with _database(ctx) as db:
        rows = quick.list_queues(db)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("(no queues)")
        return
    click.echo(f"{'queue':<32} {'ready':>7} {'sched':>7} {'leased':>7} {'dead':>7}")
    for row in rows:
        c = row["counts"]
        click.echo(
            f"{row['queue']:<32} {c['ready']:>7} {c['scheduled']:>7} "
            f"{c['leased']:>7} {c['dead']:>7}"
        )


@cli.command()
@click.argument("queue")
@click.option("--limit", default=100, show_default=True, help="Most jobs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs(ctx: click.Context, queue: str, limit: int, as_json: bool) -> None:
    """Jobs waiting or running in QUEUE: ready ones best first, then by visibility."""
    import quick
    from quick.jobs import now_ms

    with _database(ctx) as db:
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
        }
        for job in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        raise NotFound(f"queue {queue!r} has no waiting or running jobs")
    for row in rows:
        when = f"in {row['visible_in_s']:.1f}s" if row["visible_in_s"] else "now"
        click.echo(
            f"{row['job_id']}  {row['state']:<9} {row['topic']:<20} prio {row['priority']:<5} "
            f"visible {when:<9} attempt {row['attempt']}"
            + (f"  last error: {row['last_error']}" if row["last_error"] else "")
        )


@cli.group()
def dlq() -> None:
    """Dead letters: list, requeue, purge."""


@dlq.command("list")
@click.option("--queue", help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dlq_list(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """List dead letters."""
    import quick

    with _database(ctx) as db:
        dead = quick.list_dead(db, queue)
    rows = [
        {
            "queue": d.queue_id,
            "job_id": d.job_id,
            "topic": d.job.topic if d.job else None,
            "error": d.error,
            "failed_ms": d.failed_ms,
        }
        for d in dead
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['queue']}  {row['job_id']}  {row['topic']}  {row['error']}")
    if not rows:
        click.echo("(no dead letters)")


@dlq.command("requeue")
@click.argument("queue")
@click.argument("job_id")
@click.pass_context
def dlq_requeue(ctx: click.Context, queue: str, job_id: str) -> None:
    """Put a dead letter back on its queue."""
    import quick

    with _database(ctx) as db:
        try:
            click.echo(quick.requeue_dead(db, queue, job_id))
        except quick.JobNotFound:
            raise NotFound(f"no dead letter {job_id} in queue {queue}") from None


@dlq.command("purge")
@click.option("--queue", help="Only this queue.")
@click.pass_context
def dlq_purge(ctx: click.Context, queue: str | None) -> None:
    """Delete dead letters."""
    import quick

    with _database(ctx) as db:
        click.echo(f"purged {quick.purge_dead(db, queue)}")


@cli.group()
def cron() -> None:
    """Cron schedules: list, add, remove."""


@cron.command("list")
@click.pass_context
def cron_list(ctx: click.Context) -> None:
    """List schedules and when each next fires."""
    import quick

    with _database(ctx) as db:
        items = quick.list_schedules(db)
    for item in items:
        click.echo(
            f"{item.name}  {item.cron!r} {item.tz}  -> {item.queue_id}/{item.topic}"
            f"  next_ms={item.next_ms}"
        )
    if not items:
        click.echo("(no schedules)")


@cron.command("add")
@click.argument("name")
@click.argument("expression")
@click.argument("queue")
@click.argument("topic")
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
    import quick

    with _database(ctx) as db:
        try:
            item = quick.schedule(db, name, expression, queue, topic, _payload(payload), tz=tz)
        except (ValueError, TypeError) as error:
            raise UsageProblem(str(error)) from None
    click.echo(f"{item.name} next fires at next_ms={item.next_ms}")


@cron.command("remove")
@click.argument("name")
@click.pass_context
def cron_remove(ctx: click.Context, name: str) -> None:
    """Delete schedule NAME."""
    import quick

    with _database(ctx) as db:
        if not quick.remove_schedule(db, name):
            raise NotFound(f"no schedule {name!r}")
    click.echo(f"removed {name}")


@cli.command()
@click.option("--tenants", default=50, show_default=True, help="Tenant queues to spread jobs over.")
@click.option("--jobs", default=2000, show_default=True, help="Jobs to enqueue.")
@click.option("--concurrency", default=8, show_default=True, help="Jobs run at once.")
@click.option("--timeout", default=30.0, show_default=True, help="Stop after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def demo(
    ctx: click.Context, tenants: int, jobs: int, concurrency: int, timeout: float, as_json: bool
) -> None:
    """Enqueue a mixed multi-tenant workload and drain it, with live progress.

    Priorities, delayed jobs, a flaky topic that succeeds on retry and a poison job that
    ends in the dead letters; then a summary. Runs on the --db store (default ./quick.db).
    """
    from consumer.demo import run_demo, summary

    if min(tenants, jobs, concurrency) < 1 or timeout <= 0:
        raise UsageProblem("--tenants, --jobs, --concurrency and --timeout must be positive")
    live = sys.stdout.isatty() and not as_json

    def progress(result: Any, settled: int) -> None:
        if live:
            bar = int(30 * settled / max(result.enqueued, 1))
            click.echo(
                f"\r[{'#' * bar}{'.' * (30 - bar)}] {settled}/{result.enqueued} settled, "
                f"{result.outcomes['requeued']} retried, {result.outcomes['dead_lettered']} dead",
                nl=False,
            )

    with _database(ctx) as db:
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
        return
    for line in summary(result):
        click.echo(line)
    if not result.finished:
        raise click.ClickException("the demo did not finish within --timeout")


@cli.command()
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
        from quick.dashboard import serve
    except ImportError as error:
        raise UsageProblem(f"{error}: pip install 'quick[dashboard]'") from None
    with _database(ctx) as db:
        try:
            serve(db, host=host, port=port, allow_actions=allow_actions)
        except OSError as error:
            raise UsageProblem(f"cannot serve on {host}:{port}: {error}") from None


cli.add_command(runs)
cli.add_command(signal_step)


def main() -> None:
    """Entry point of the ``quick`` console script."""
    cli(prog_name="quick")
