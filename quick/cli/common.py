"""What every ``quick`` command shares: the ``--db`` option, the store, errors, parsing.

Exit codes (the same for every command):

== =====================================================================================
0  done
1  the store refused the action (a run in the wrong state, an unexpected round trip)
2  a usage mistake: a bad option, URL, id or ``--payload``
3  the store cannot be opened or used (a storage problem: missing directory, not a
   database, no ``libfdb_c``, a transaction that failed)
4  the named thing (job, dead letter, schedule, run) does not exist
5  the wait ran out (``quick result --timeout``): the job has not finished yet
== =====================================================================================

quick's own errors become one of these with a message on stderr, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import click

import keyspace
from keyspace import layout
from keyspace.errors import EngineUnavailable, InvalidURL, QuickError, StorageError
from keyspace.protocol import Database
from quick.corruption import CorruptRecord

__all__ = [
    "DB_HELP",
    "ID",
    "LIMIT",
    "MAX_DELAY_SECONDS",
    "NotFound",
    "Refused",
    "TimedOut",
    "Settings",
    "Unavailable",
    "UsageProblem",
    "add_db_option",
    "describe_key",
    "echo_json",
    "open_store",
    "open_url",
    "parse_payload",
    "sqlite_path",
    "store_location",
    "store_url",
    "usage_problem",
    "warn_skipped",
    "when",
]

F = TypeVar("F", bound=Callable[..., Any])


class UsageProblem(click.ClickException):
    """A mistake in how quick was called (exit code 2)."""

    exit_code = 2


class Refused(click.ClickException):
    """The store refused the action, e.g. a run not in a state it applies to (exit code 1)."""

    exit_code = 1


class Unavailable(click.ClickException):
    """The store cannot be opened or used (exit code 3)."""

    exit_code = 3


class NotFound(click.ClickException):
    """The named thing does not exist (exit code 4)."""

    exit_code = 4


class TimedOut(click.ClickException):
    """The wait ran out before the thing waited for happened (exit code 5)."""

    exit_code = 5


#: ``--db`` help, shared by the group and every subcommand.
DB_HELP = "Database URL: sqlite:///path/to/file.db, fdb:// or fdb:///path/to/fdb.cluster."


class Identifier(click.ParamType):  # type: ignore[type-arg]
    """A queue, topic, job, schedule, run or step name: text that is valid UTF-8.

    Arguments that are not (bytes the shell passed that decode to lone surrogates) are a
    usage mistake named by their parameter, before anything reaches the store.
    """

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(f"{text!r} is not valid UTF-8", param, ctx)
        return text


#: The type of every id-like argument and option.
ID = Identifier()

#: ``--limit`` on listings: at least one row, and few enough to read in one transaction.
LIMIT = click.IntRange(1, 10_000)

#: The longest ``--delay`` (about 100 years): later visibility times cannot be stored or shown.
MAX_DELAY_SECONDS = 100 * 365.25 * 24 * 3600


@dataclass(slots=True)
class Settings:
    """The context object: options the group takes that commands read (``ctx.obj``)."""

    db: str


def _db_after_subcommand(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Settings).db = value


def add_db_option(command: click.Command) -> None:
    """Let ``command`` take ``--db`` after its name too (``quick worker --db URL``).

    The value overrides the group's ``--db``/``$QUICK_DB``; the option has no envvar of
    its own, so ``$QUICK_DB`` never overrides a ``--db`` written before the subcommand.
    """
    command.params.append(
        click.Option(
            ["--db"],
            default=None,
            expose_value=False,
            callback=_db_after_subcommand,
            help=DB_HELP + " May also be given before the subcommand, or as $QUICK_DB.",
        )
    )


def store_url(ctx: click.Context) -> str:
    """The ``--db`` URL this invocation names (``$QUICK_DB`` or the default without one)."""
    settings = ctx.find_object(Settings)
    return settings.db if settings is not None else keyspace.resolve_url()


def sqlite_path(url: str) -> str | None:
    """The absolute path of a sqlite URL's file (three slashes mean a path relative to the
    working directory, four an absolute one); None for other URLs."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        return None
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    return os.path.abspath(path) if path else None


def store_location(url: str) -> str:
    """The URL, and for a sqlite URL the absolute path it resolves to."""
    path = sqlite_path(url)
    return f"{url} (file {path})" if path else url


@contextmanager
def open_store(ctx: click.Context) -> Iterator[Database]:
    """The ``--db`` store, open for the ``with`` body; quick's errors become exit codes.

    Raises:
        UsageProblem: a malformed URL.
        Unavailable: the store cannot be opened, or a transaction failed (StorageError).
        Refused: any other QuickError the body raises.
    """
    with open_url(store_url(ctx)) as db:
        yield db


@contextmanager
def open_url(url: str) -> Iterator[Database]:
    """The store at ``url``, open for the ``with`` body; errors as :func:`open_store`."""
    if not url.strip():
        raise UsageProblem(
            "--db is empty: give a database URL such as sqlite:///./quick.db, or leave "
            "--db out to use $QUICK_DB or the default"
        )
    try:
        db = keyspace.open(url)
    except InvalidURL as error:
        raise UsageProblem(str(error)) from None
    except (EngineUnavailable, StorageError) as error:
        raise Unavailable(f"cannot open {store_location(url)}: {error}") from None
    except (OSError, sqlite3.Error) as error:
        # The engines raise StorageError for what they know; anything else the OS or
        # SQLite raises while opening still gets a message naming the file, not a traceback.
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise Unavailable(f"cannot open {store_location(url)}: {reason}") from None
    try:
        yield db
    except StorageError as error:
        raise Unavailable(f"{store_location(url)}: {error}") from None
    except QuickError as error:
        raise Refused(str(error)) from None
    except ExceptionGroup as group:
        # trio's nurseries (a worker) raise a child's error inside a group: a store that
        # fails under a worker exits 3 naming it, as it does under any other command.
        storage, rest = group.split(StorageError)
        if storage is None or rest is not None:
            raise
        raise Unavailable(f"{store_location(url)}: {_first(storage)}") from None
    finally:
        db.close()


def _first(group: BaseExceptionGroup[StorageError]) -> StorageError:
    """The first error of a (possibly nested) group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def parse_payload(text: str | None, option: str = "--payload") -> Any:
    """The JSON ``text`` as a value (None for no option); UsageProblem naming ``option``."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageProblem(f"{option} is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, and integers of over 4,300 digits
        raise UsageProblem(f"{option} is not valid JSON: {error}") from None


#: Library argument names -> the options that carry them, for error messages.
OPTION_OF = {
    "payload": "--payload",
    "delay": "--delay",
    "priority": "--priority",
    "max_attempts": "--max-attempts",
    "tz": "--tz",
    "max_running": "--max-running",
    "max_per_second": "--max-per-second",
}


def usage_problem(error: ValueError | TypeError) -> UsageProblem:
    """A library validation error as a usage mistake, naming the option that carried the
    offending value (``--delay: must be ...``) where there is one."""
    field, problem = getattr(error, "field", None), getattr(error, "problem", None)
    if isinstance(field, str) and field in OPTION_OF and problem is not None:
        return UsageProblem(f"{OPTION_OF[field]}: {problem}")
    return UsageProblem(str(error))


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON; bytes as hex, sets as sorted lists, else repr."""
    click.echo(json.dumps(value, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, set | frozenset):
        return sorted(value)
    return repr(value)


def describe_key(key: bytes) -> str:
    """:func:`keyspace.layout.describe`, falling back to the raw fields when a time in the
    key is out of range for a date (a stored key must never crash a listing)."""
    try:
        return layout.describe(key)
    except (OverflowError, ValueError, OSError):
        shape, items, fields = layout.decode(key)
        if shape is None:
            return f"unknown quick key {items!r}"
        return "  ".join([shape.meaning] + [f"{k}={v!r}" for k, v in fields.items()])


def when(ms: int | None) -> str:
    """``ms`` since the epoch as an ISO date in UTC; the number itself when out of range."""
    if ms is None:
        return "-"
    try:
        moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def warn_skipped(skipped: Iterable[CorruptRecord]) -> None:
    """Name each record a listing skipped, on stderr: its key described, and why."""
    for record in skipped:
        where = describe_key(record.key)
        click.echo(f"warning: skipped corrupt record at {where}: {record.error}", err=True)
