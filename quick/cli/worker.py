"""``quick worker``: serve an App's jobs from the store until a signal."""

from __future__ import annotations

import importlib
import logging
from contextlib import ExitStack

import click

from consumer import ConsumerConfig
from quick.app import App
from quick.cli.common import UsageProblem, open_store, store_url

__all__ = ["worker", "load_app"]

#: The consumer's defaults, which the options below show and pass on unchanged.
DEFAULTS = ConsumerConfig()
assert DEFAULTS.keep_finished_ms is not None


def load_app(spec: str) -> App:
    """``module:attribute`` -> the App it names; UsageProblem when it does not resolve."""
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


@click.command()
@click.option(
    "--app", "app_spec", required=True, help="The quick.App to serve, as module:attribute."
)
@click.option(
    "--concurrency",
    default=DEFAULTS.concurrency,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Jobs run at once per process.",
)
@click.option(
    "--batch-size",
    default=DEFAULTS.batch_size,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Most jobs leased per claim (fewer when jobs are slow or many queues are due).",
)
@click.option(
    "--lease-seconds",
    default=DEFAULTS.lease_ms / 1000,
    show_default=True,
    type=click.FloatRange(0, 86_400, min_open=True),
    help="Lease length; extended while a job runs.",
)
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Consumer processes to supervise; one that dies is restarted (with backoff).",
)
@click.option(
    "--grace",
    default=DEFAULTS.grace,
    show_default=True,
    type=click.FloatRange(0, 86_400),
    help="Seconds running jobs get to finish on shutdown.",
)
@click.option(
    "--keep-finished",
    default=DEFAULTS.keep_finished_ms / 1000,
    show_default=True,
    type=click.FloatRange(0, 10 * 365 * 86_400),
    help="Seconds a finished job's tombstone and result are kept (so enqueueing its id "
    "again adds nothing, and quick.result finds it) before the worker purges them; 0 "
    "purges as soon as possible.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics at http://HOST:PORT/metrics. With --processes P, "
    "process i (0..P-1) serves on PORT+i.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics server binds (with --metrics-port): loopback by default, as "
    "the dashboard's; 0.0.0.0 lets a Prometheus on another machine scrape it.",
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
    keep_finished: float,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
    log_level: str,
) -> None:
    """Run consumers until SIGINT/SIGTERM; a second signal stops at once (exit status
    128 + the signal, e.g. 143), leaving the jobs held leased until their leases expire.

    Each settled job attempt is logged with its queue, topic, job_id, attempt, outcome,
    duration and error. A store that stops answering (a cluster out of reach, a full
    disk) does not stop a worker: it logs the outage, retries with backoff and resumes.
    With --processes, a process that dies is logged and restarted
    (after 0.5 s, doubling to 30 s while it keeps dying); the exit code is non-zero if a
    process ended abnormally and was not restarted.
    """
    if metrics_port is not None and metrics_port + processes - 1 > 65535:
        raise UsageProblem(f"--metrics-port {metrics_port}: PORT+{processes - 1} is past 65535")
    app = load_app(app_spec)
    from consumer import logs

    logs.configure(log_format, log_level.upper())
    if processes > 1:
        from quick.cli.supervisor import forwarded_options, supervise

        argv = ["--db", store_url(ctx), "worker"]
        argv += forwarded_options(ctx, skip={"processes", "metrics_port", "metrics_host"})
        argvs = [
            argv
            if metrics_port is None
            else [*argv, "--metrics-port", str(metrics_port + i), "--metrics-host", metrics_host]
            for i in range(processes)
        ]
        raise SystemExit(supervise(argvs))
    config = _config(concurrency, batch_size, lease_seconds, grace, keep_finished)
    _serve(ctx, app, config, metrics_port, metrics_host)


def _config(
    concurrency: int, batch_size: int, lease_seconds: float, grace: float, keep_finished: float
) -> ConsumerConfig:
    return ConsumerConfig(
        concurrency=concurrency,
        batch_size=batch_size,
        lease_ms=round(lease_seconds * 1000),
        grace=grace,
        keep_finished_ms=round(keep_finished * 1000),
    )


def _serve(
    ctx: click.Context,
    app: App,
    config: ConsumerConfig,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """One consumer in this process, until a signal; its outcome counts logged at the end.

    Imports :mod:`workflow` first so its job extension is registered: a worker runs
    workflow steps whether or not the app imports the workflow package itself.
    """
    import workflow  # noqa: F401  (registers the workflow job extension)
    from consumer import logs
    from consumer.serve import StoppedNow, serve

    with open_store(ctx) as db, ExitStack() as stack:
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
        try:
            outcomes = serve(db, app, config, metrics)
        except StoppedNow as stopped:
            logs.log_stopped(dict(stopped.outcomes))
            logging.getLogger("quick.worker").warning("%s", stopped)
            raise SystemExit(128 + stopped.signum) from None
    logs.log_stopped(dict(outcomes))
