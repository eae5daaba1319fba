"""``quick check`` and ``quick inspect keyspace``: looking at the store itself."""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import click

from keyspace import layout
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Versionstamp
from quick.cli.common import Refused, UsageProblem, describe_key, open_store

__all__ = ["check", "inspect"]

#: Keys ``inspect keyspace`` reads per transaction (no transaction outlives 5 s).
_PAGE = 500
#: Seconds between a deep check's progress lines on stderr.
PROGRESS_EVERY = 1.0


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--deep",
    is_flag=True,
    help="Walk the whole keyspace: records that do not decode and broken invariants.",
)
@click.option(
    "--repair", is_flag=True, help="With --deep: fix what can be fixed without losing a job."
)
@click.pass_context
def check(ctx: click.Context, as_json: bool, deep: bool, repair: bool) -> None:
    """Round-trip keys through the store and report what each step saw.

    Writes a few keys under a scratch prefix, reads them back (point, range, atomic
    add, versionstamp), then clears them: a quick health check of an engine. With
    --deep, checks the stored data instead (exit code 1 when problems are left).

    --deep reads the store in many short snapshots, so on a busy store (workers and
    producers running) it can report transient false problems: a job seen between its
    record and its index entry, or a counter read before the jobs it counts. Rerun it,
    and trust what persists; or run it on an idle store (workers stopped). --repair
    re-reads each queue it fixes in one transaction, so it never undoes live work.
    """
    if repair and not deep:
        raise UsageProblem("--repair needs --deep")
    if deep:
        _deep(ctx, as_json, repair)
        return
    with open_store(ctx) as db:
        report = _round_trip(db)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"store      {db.url}")
    click.echo(f"namespace  {db.namespace or '(default)'}")
    for step, outcome in report["steps"].items():
        click.echo(f"{step:<10} {outcome}")
    click.echo(f"ok: {report['transactions']} transactions in {report['elapsed_ms']:.1f} ms")


def _deep(ctx: click.Context, as_json: bool, repair: bool) -> None:
    from quick.checking import Problem, check_deep

    def show(p: Problem) -> None:
        mark = "repaired  " if p.repaired else ""
        click.echo(f"{mark}{p.kind}: {layout.describe(p.key)}: {p.detail}")

    # Without --repair (and --json) each problem prints as the walk finds it.
    streaming = not as_json and not repair
    with open_store(ctx) as db:
        report = check_deep(
            db, repair=repair, progress=_Progress(), found=show if streaming else None
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "keys": report.keys,
                    "clean": report.clean,
                    "problems": [p.as_dict() for p in report.problems],
                },
                indent=2,
            )
        )
    else:
        if not streaming:
            for p in report.problems:
                show(p)
        left = sum(not p.repaired for p in report.problems)
        click.echo(f"{report.keys} keys checked, {len(report.problems)} problems, {left} left")
    if not report.clean:
        raise SystemExit(1)


class _Progress:
    """Says on stderr, at most every :data:`PROGRESS_EVERY` seconds, how far a deep check's
    walk has come (keys read, the rate, where it is)."""

    def __init__(self) -> None:
        self.started = self.said = time.monotonic()

    def __call__(self, keys: int, at: bytes) -> None:
        now = time.monotonic()
        if now - self.said < PROGRESS_EVERY:
            return
        self.said = now
        rate = keys / max(now - self.started, 1e-9)
        where = layout.describe(at) if at else "the start"
        click.echo(f"checked {keys:,} keys ({rate:,.0f}/s), at {where}", err=True)


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
        raise Refused(f"round trip saw unexpected results: {steps}")
    elapsed = (time.perf_counter() - started) * 1000
    return {
        "url": db.url,
        "namespace": db.namespace,
        "steps": steps,
        "transactions": 3,
        "elapsed_ms": elapsed,
    }


@click.group()
def inspect() -> None:
    """Look inside the store."""


@inspect.command("keyspace")
@click.option("--prefix", default="", help="Only keys whose decoded line contains this text.")
@click.option("--raw", is_flag=True, help="Show raw keys and values (hex) beside their meaning.")
@click.option(
    "--limit",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Stop after this many keys.",
)
@click.pass_context
def inspect_keyspace(ctx: click.Context, prefix: str, raw: bool, limit: int) -> None:
    """Decode every quick key into what it means."""
    begin, end = layout.ROOT.range()
    shown = 0
    with open_store(ctx) as db:
        if db.namespace is not None:
            click.echo(f"namespace {db.namespace}")
        for key, value in _scan(db, begin, end):
            line = describe_key(key)
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
    """Every pair in [begin, end), a page per transaction."""
    from quick.checking import walk

    return walk(db, begin, end, _PAGE)
