"""The ``quick`` command line: a thin click group over the library.

Every command takes ``--db`` (or ``$QUICK_DB``; default ``sqlite:///./quick.db``).
quick's own errors become messages and non-zero exit codes, never tracebacks.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

import keyspace
from keyspace import layout
from keyspace.errors import EngineUnavailable, InvalidURL, QuickError
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Versionstamp

__all__ = ["main", "cli"]


class UsageProblem(click.ClickException):
    """A mistake in how quick was called (exit code 2)."""

    exit_code = 2


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


def main() -> None:
    """Entry point of the ``quick`` console script."""
    cli(prog_name="quick")
