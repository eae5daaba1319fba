"""``manage.py quick_worker``: ``quick worker`` for this project's tasks.

It takes ``quick worker``'s options (read from that command, so the two never drift)
except ``--app``: the App is :mod:`quick.contrib.django.worker`'s, and the store is the
chosen QuickBackend's ``url`` unless ``--db`` names another.
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

import click
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from quick.cli.main import cli
from quick.contrib.django.worker import BACKEND_ENV, project_app

#: ``quick worker``'s options that this command does not take.
SKIPPED = {"app_spec"}


def _worker_options() -> list[click.Option]:
    worker = cli.commands["worker"]
    return [p for p in worker.params if isinstance(p, click.Option) and p.name not in SKIPPED]


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Run quick consumers for this project's tasks (those registered with a "
        "QuickBackend) until SIGINT/SIGTERM; quick worker's options, without --app."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--backend",
            default="default",
            help="The TASKS alias of the QuickBackend to serve (default: default).",
        )
        for option in _worker_options():
            shown = option.default if isinstance(option.default, str | int | float) else "none"
            text = f"{option.help} (default: {shown})"
            if option.name == "db":
                text = "The store's URL (default: the backend's OPTIONS url, else $QUICK_DB)."
            choices = getattr(option.type, "choices", None)
            parser.add_argument(
                *option.opts,
                dest=f"quick_{option.name}",
                metavar=None if choices else option.name.upper(),
                default=None,
                choices=list(choices) if choices else None,
                help=text,
            )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["backend"]
        os.environ[BACKEND_ENV] = alias  # the supervised processes of --processes serve it too
        try:
            project_app(alias)  # refuses a missing or foreign backend before anything runs
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        from quick.contrib.django.compat import api

        url = options.get("quick_db") or api.task_backends[alias].url
        argv = ["--db", url, "worker", "--app", "quick.contrib.django.worker:app"]
        for option in _worker_options():
            value = options.get(f"quick_{option.name}")
            if value is not None and option.name != "db":
                argv += [option.opts[0], str(value)]
        cli.main(args=argv, prog_name="manage.py quick_worker")
