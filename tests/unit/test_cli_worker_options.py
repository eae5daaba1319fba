"""``quick worker``'s options: their defaults are the consumer's, and ``--processes``
passes each child exactly the options it was given, parsed."""

from __future__ import annotations

import click
from click.testing import CliRunner

from consumer import ConsumerConfig
from quick.cli.supervisor import forwarded_options
from quick.cli.worker import worker

SKIP = {"processes", "metrics_port", "metrics_host"}


def _parsed(*args: str) -> click.Context:
    return worker.make_context("worker", list(args))


def test_worker_option_defaults_are_the_consumers() -> None:
    config = ConsumerConfig()
    params = _parsed("--app", "m:app").params
    assert params["concurrency"] == config.concurrency
    assert params["batch_size"] == config.batch_size
    assert round(params["lease_seconds"] * 1000) == config.lease_ms
    assert params["grace"] == config.grace
    assert config.keep_finished_ms is not None
    assert round(params["keep_finished"] * 1000) == config.keep_finished_ms


def test_worker_help_shows_the_consumers_defaults() -> None:
    result = CliRunner().invoke(worker, ["--help"], terminal_width=400)
    assert result.exit_code == 0
    for shown in ("default: 8;", "default: 200;", "default: 30.0;", "default: 86400.0;"):
        assert shown in result.output


def test_worker_processes_forward_every_given_option() -> None:
    ctx = _parsed(
        "--app",
        "m:app",
        "--processes",
        "3",
        "--concurrency",
        "4",
        "--lease-seconds",
        "2.5",
        "--log-format",
        "json",
        "--metrics-port",
        "9000",
    )
    assert forwarded_options(ctx, skip=SKIP) == [
        "--app",
        "m:app",
        "--concurrency",
        "4",
        "--batch-size",
        "200",
        "--lease-seconds",
        "2.5",
        "--grace",
        "30.0",
        "--keep-finished",
        "86400.0",
        "--log-format",
        "json",
        "--log-level",
        "info",
    ]


def test_worker_forwarded_options_parse_back_to_the_same_values() -> None:
    ctx = _parsed("--app", "m:app", "--batch-size", "7", "--grace", "0", "--keep-finished", "1")
    again = _parsed(*forwarded_options(ctx, skip=SKIP))
    assert {k: v for k, v in again.params.items() if k not in SKIP} == {
        k: v for k, v in ctx.params.items() if k not in SKIP
    }


def test_forwarded_options_write_flags_and_repeated_options() -> None:
    @click.command()
    @click.option("--fast/--slow", default=True)
    @click.option("--verbose", is_flag=True)
    @click.option("--tag", multiple=True)
    @click.option("--name")
    def command(fast: bool, verbose: bool, tag: tuple[str, ...], name: str | None) -> None:
        """A command with every kind of option."""

    ctx = command.make_context("command", ["--slow", "--verbose", "--tag", "a", "--tag", "b"])
    assert forwarded_options(ctx) == ["--slow", "--verbose", "--tag", "a", "--tag", "b"]
    assert forwarded_options(command.make_context("command", [])) == ["--fast"]
