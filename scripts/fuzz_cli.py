"""Fuzz the ``quick`` CLI: random invocations must never end in a traceback, and a call
that is refused (non-zero exit) must not have written to the store.

Usage: ``python scripts/fuzz_cli.py --cases N --seed S [--show K]``

Each case builds one random invocation (a subcommand, options with odd values: ids
with bytes that are not UTF-8, payload JSON of awkward shapes, limits and delays at
and past their bounds, foreign and broken URLs) and runs it through click's
``CliRunner`` against a temporary store that the earlier cases filled. A case fails
when the command raised anything but click's clean exit, or exited non-zero after
changing the store (a dump of every key before and after is compared). ``worker``
and ``demo`` are left out: they run until a signal or a timeout.

Exit status: 0 when no case failed, 1 otherwise (the failures are printed, grouped
by exception type and place).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import quick  # noqa: E402
from keyspace.layout import ROOT as KEY_ROOT  # noqa: E402
from quick.cli import cli  # noqa: E402

__all__ = ["Failure", "fuzz", "invocation"]

ODD_TEXT = [
    "q",
    "tenant-1",
    "",
    " ",
    "caf\udce9",
    "\udcff\udcfe",
    "\x00",
    "a" * 300,
    "日本",
    "--",
    "-x",
    "q/with/slashes",
    "\n",
]
PAYLOADS = [
    "{}",
    "null",
    '{"a": 1}',
    "[1, 2, 3]",
    str(2**64),
    str(2**63 - 1),
    str(-(2**63) - 1),
    "9" * 5000,
    "1e400",
    "NaN",
    "[" * 50_000 + "]" * 50_000,
    '{"a": ' * 800 + "1" + "}" * 800,
    '"\\ud800"',
    "{nope",
    "",
    '"' + "x" * 200_000 + '"',
]
NUMBERS = [
    "0",
    "1",
    "-1",
    "5",
    "100",
    str(2**31),
    str(2**63),
    str(2**64),
    "1e16",
    "3e9",
    "inf",
    "-inf",
    "nan",
    "0.001",
    "x",
    "",
]
BAD_URLS = [
    "mysql://x",
    "sqlite://host/x.db",
    "sqlite:///",
    "sqlite:///{tmp}/missing/q.db",
    "sqlite:///{tmp}",
    "sqlite:///{tmp}/not-a-db.txt",
    "sqlite:///{tmp}/q.db?retry_limit=x",
    "sqlite:///{tmp}/q.db?bogus=1",
    "fdb://{tmp}/no.cluster",
]


def _pick(rng: random.Random, values: list[str]) -> str:
    return rng.choice(values)


def _text(rng: random.Random) -> str:
    return _pick(rng, ODD_TEXT) if rng.random() < 0.5 else "q"


def _maybe(rng: random.Random, option: str, values: list[str], argv: list[str]) -> None:
    if rng.random() < 0.4:
        argv += [option, _pick(rng, values)]


COMMANDS: dict[str, Callable[[random.Random], list[str]]] = {}


def _command(name: str) -> Callable[[Callable[[random.Random], list[str]]], Any]:
    def register(build: Callable[[random.Random], list[str]]) -> Any:
        COMMANDS[name] = build
        return build

    return register


@_command("enqueue")
def _enqueue(rng: random.Random) -> list[str]:
    argv = ["enqueue", _text(rng), _text(rng)]
    _maybe(rng, "--payload", PAYLOADS, argv)
    _maybe(rng, "--delay", NUMBERS, argv)
    _maybe(rng, "--priority", NUMBERS, argv)
    _maybe(rng, "--max-attempts", NUMBERS, argv)
    return argv


@_command("queues")
def _queues(rng: random.Random) -> list[str]:
    return ["queues", *(["--json"] if rng.random() < 0.5 else [])]


@_command("jobs")
def _jobs(rng: random.Random) -> list[str]:
    argv = ["jobs", _text(rng)]
    _maybe(rng, "--limit", NUMBERS, argv)
    return argv + (["--json"] if rng.random() < 0.5 else [])


@_command("result")
def _result(rng: random.Random) -> list[str]:
    # Ids here are never pending ones (the CLI enqueues only fresh ids), so no wait hangs.
    argv = ["result", _text(rng)]
    _maybe(rng, "--timeout", NUMBERS, argv)
    return argv + (["--json"] if rng.random() < 0.5 else [])


@_command("dlq")
def _dlq(rng: random.Random) -> list[str]:
    action = rng.choice(["list", "requeue", "purge"])
    if action == "requeue":
        return ["dlq", "requeue", _text(rng), _text(rng)]
    argv = ["dlq", action]
    _maybe(rng, "--queue", ODD_TEXT, argv)
    return argv


@_command("cron")
def _cron(rng: random.Random) -> list[str]:
    action = rng.choice(["list", "add", "remove"])
    if action == "list":
        return ["cron", "list"]
    if action == "remove":
        return ["cron", "remove", _text(rng)]
    expr = rng.choice(["* * * * *", "0 3 * * *", "61 * * * *", "0 0 30 2 *", "", "nope"])
    argv = ["cron", "add", _text(rng), expr, _text(rng), _text(rng)]
    _maybe(rng, "--payload", PAYLOADS, argv)
    _maybe(rng, "--tz", ["UTC", "Europe/Paris", "Nowhere/Else", "", "\udcff", "../etc"], argv)
    return argv


@_command("inspect")
def _inspect(rng: random.Random) -> list[str]:
    argv = ["inspect", "keyspace"]
    _maybe(rng, "--limit", NUMBERS, argv)
    _maybe(rng, "--prefix", ODD_TEXT, argv)
    return argv + (["--raw"] if rng.random() < 0.3 else [])


@_command("check")
def _check(rng: random.Random) -> list[str]:
    return ["check", *(["--json"] if rng.random() < 0.5 else [])]


@_command("runs")
def _runs(rng: random.Random) -> list[str]:
    action = rng.choice(["list", "show", "explain", "cancel", "pause", "resume", "retry"])
    if action == "list":
        argv = ["runs", "list"]
        _maybe(rng, "--limit", NUMBERS, argv)
        _maybe(rng, "--status", ["running", "nope", "\udcff", ""], argv)
        _maybe(rng, "--workflow", ODD_TEXT, argv)
        return argv
    return ["runs", action, _text(rng)]


@_command("signal")
def _signal(rng: random.Random) -> list[str]:
    argv = ["signal", _text(rng), _text(rng)]
    _maybe(rng, "--payload", PAYLOADS, argv)
    return argv


def invocation(rng: random.Random, url: str, tmp: Path) -> list[str]:
    """One random ``quick`` argv; ``--db`` before or after the subcommand, or a bad URL."""
    argv = COMMANDS[rng.choice(sorted(COMMANDS))](rng)
    db = url if rng.random() < 0.9 else rng.choice(BAD_URLS).format(tmp=tmp)
    if rng.random() < 0.5:
        return ["--db", db, *argv]
    return [*argv, "--db", db]


class Failure:
    """One failing case: its argv, what went wrong, and where."""

    def __init__(self, argv: list[str], kind: str, where: str, detail: str) -> None:
        self.argv, self.kind, self.where, self.detail = argv, kind, where, detail

    def __str__(self) -> str:
        shown = [a if len(a) < 80 else a[:40] + f"...({len(a)} chars)" for a in self.argv]
        return f"{self.kind} at {self.where}\n  argv: {shown!r}\n  {self.detail}"


def _dump(url: str) -> list[tuple[bytes, bytes]]:
    with quick.open(url) as db:
        rows: list[tuple[bytes, bytes]] = db.transact(lambda tr: tr.get_range(*KEY_ROOT.range()))
        return rows


def _seed_store(url: str) -> None:
    """A few jobs, a dead letter and a schedule, so commands find things to act on."""
    with quick.open(url) as db:
        for n in range(5):
            quick.enqueue(db, "q", "t", {"n": n}, delay=n * 10)
        quick.enqueue(db, "tenant-1", "t", None, max_attempts=1)
        for claim in quick.claim(db, "tenant-1", "fuzz"):
            quick.fail(db, claim, "boom")
        quick.schedule(db, "nightly", "0 3 * * *", "q", "report", {"x": 1})


def fuzz(cases: int, seed: int, tmp: Path) -> tuple[list[Failure], Counter[int]]:
    """Run ``cases`` random invocations; return the failures and the exit-code counts."""
    rng = random.Random(seed)
    (tmp / "not-a-db.txt").write_bytes(b"not a database\n" * 20)
    url = f"sqlite:///{tmp / 'fuzz.db'}"
    _seed_store(url)
    runner = CliRunner()
    failures: list[Failure] = []
    codes: Counter[int] = Counter()
    before = _dump(url)
    for _ in range(cases):
        argv = invocation(rng, url, tmp)
        result = runner.invoke(cli, argv, catch_exceptions=True)
        codes[result.exit_code] += 1
        error = result.exception
        if error is not None and not isinstance(error, SystemExit):
            frame = traceback.extract_tb(error.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            failures.append(Failure(argv, type(error).__name__, where, str(error)[:300]))
            before = _dump(url)
            continue
        after = _dump(url)
        if result.exit_code != 0 and after != before:
            failures.append(
                Failure(argv, "refused call wrote", "store", result.output.strip()[:300])
            )
        before = after
    return failures, codes


def main() -> int:
    """Parse the arguments, fuzz, and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="invocations to run")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same cases)")
    parser.add_argument("--show", type=int, default=3, help="examples printed per failure kind")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # relative URLs and the default ./quick.db land in the temp dir
        try:
            failures, codes = fuzz(args.cases, args.seed, Path(tmp))
        finally:
            os.chdir(cwd)
    elapsed = time.perf_counter() - started
    kinds = Counter((f.kind, f.where) for f in failures)
    print(
        f"{args.cases} cases, seed {args.seed}, {elapsed:.1f} s: {len(failures)} failures "
        f"in {len(kinds)} kinds; exit codes {dict(sorted(codes.items()))}"
    )
    for (kind, where), count in kinds.most_common():
        print(f"\n{count} x {kind} at {where}")
        for failure in [f for f in failures if (f.kind, f.where) == (kind, where)][: args.show]:
            print(f"  {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
