"""Fuzz the public Python API: hostile arguments must be refused cleanly, and a refused
call must not have written to the store.

Usage: ``python scripts/fuzz_api.py --cases N --seed S [--show K] [--only NAME ...]``

Each case calls one public function of :mod:`quick` (enqueue, enqueue_many, claim,
complete, fail, snooze, release, discard, dead_letter, heartbeat, cancel,
requeue_dead, schedule, remove_schedule, set_queue_limits, get_job, job_state, list_jobs,
purge_dead, result)
with random arguments, many hostile: wrong types, huge ints, NaN and infinities,
odd unicode and lone surrogates, nested and oversize payloads (near the 100,000-byte
value limit), bad queue names, claims that were forged or already settled. A case
fails when the call raised anything but a ``quick.QuickError``, ``ValueError`` or
``TypeError`` (subclasses included), or raised after changing the store (a dump of
every key before and after is compared).

Exit status: 0 when no case failed, 1 otherwise (failures grouped by type and place).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import quick
from keyspace.protocol import Database

CLEAN = (quick.QuickError, ValueError, TypeError)
QUEUES = ["q", "q2", "tenant-1"]


def _text(rng: random.Random) -> Any:
    return rng.choice(
        [
            "q",
            "q2",
            "",
            " ",
            "a" * rng.choice([1, 200, 5000]),
            "\ud800",
            "x\udfffy",
            "é\u0301",
            "\u202e\u200b",
            "\x00",
            "nul\x00in",
            "🙂" * 50,
            "/../",
            b"bytes",
            5,
            None,
            3.5,
            ["q"],
        ]
    )


def _number(rng: random.Random) -> Any:
    return rng.choice(
        [0, 1, -1, 2**63, -(2**63) - 1, 2**64, 10**30, math.nan, math.inf, -math.inf, 0.5,
         True, "5", None, 30_000, 1_000, 2**62]
    )  # fmt: skip


def _payload(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "text", "list", "map", "huge", "float", "bytes", "odd", "deep", "none"]
    kind = rng.choice(kinds if depth < 3 else kinds[:2])
    if kind == "int":
        return _number(rng)
    if kind == "text":
        return _text(rng)
    if kind == "list":
        return [_payload(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "map":
        return {_text(rng) if rng.random() < 0.8 else 1: _payload(rng, depth + 1) for _ in range(3)}
    if kind == "huge":
        return "x" * rng.choice([99_900, 99_990, 100_000, 100_050, 200_000])
    if kind == "float":
        return rng.choice([math.nan, math.inf, 1e308, -0.0])
    if kind == "bytes":
        return rng.randbytes(rng.choice([0, 10, 99_980]))
    if kind == "odd":
        return rng.choice([object(), {1, 2}, (1, 2), lambda: 1, Exception("x")])
    if kind == "deep":
        nested: Any = 1
        for _ in range(rng.choice([10, 200, 2000])):
            nested = [nested]
        return nested
    return None


def _claim(db: Database, rng: random.Random) -> Any:
    """A real claim, a settled one, a forged one, or not a claim at all."""
    roll = rng.random()
    if roll < 0.5:
        claims = quick.claim(db, rng.choice(QUEUES), "fuzzer", limit=2)
        if claims:
            return rng.choice(claims)
        quick.enqueue(db, "q", "t", 1)
        claims = quick.claim(db, "q", "fuzzer")
        return claims[0] if claims else None
    if roll < 0.8:
        claims = quick.claim(db, "q", "fuzzer", now_ms=2**62)  # far future: takes any lease
        if claims:
            claim = claims[0]
            fields = {rng.choice(["token", "job_id", "queue_id", "attempt", "owner"]): _text(rng)}
            try:
                return dataclasses.replace(claim, **fields)
            except CLEAN:
                return claim
    return rng.choice([None, "claim", 5, {"job_id": "x"}])


Case = Callable[[Database, random.Random], Callable[[], Any]]
CASES: dict[str, Case] = {}


def _case(name: str) -> Callable[[Case], Case]:
    def register(build: Case) -> Case:
        CASES[name] = build
        return build

    return register


def _options(rng: random.Random, names: list[str]) -> dict[str, Any]:
    return {
        n: (_number(rng) if rng.random() < 0.7 else _text(rng)) for n in names if rng.random() < 0.4
    }


@_case("enqueue")
def _enqueue(db: Database, rng: random.Random) -> Callable[[], Any]:
    args = (rng.choice(QUEUES) if rng.random() < 0.5 else _text(rng), _text(rng), _payload(rng))
    opts = _options(rng, ["priority", "delay", "at", "max_attempts"])
    if rng.random() < 0.3:
        opts["job_id"] = _text(rng)
    if rng.random() < 0.2:
        opts["unique_key"] = _text(rng)
    return lambda: quick.enqueue(db, *args, **opts)


@_case("enqueue_many")
def _enqueue_many(db: Database, rng: random.Random) -> Callable[[], Any]:
    jobs: Any = [
        {
            "queue_id": rng.choice(QUEUES),
            "topic": "t",
            "payload": _payload(rng),
            **_options(rng, ["priority"]),
        }
        for _ in range(rng.randrange(5))
    ]
    if rng.random() < 0.2:
        jobs = rng.choice([None, 5, "jobs", [None], [{"queue_id": "q"}], [{"bogus": 1}]])
    return lambda: quick.enqueue_many(db, jobs)


@_case("claim")
def _claim_case(db: Database, rng: random.Random) -> Callable[[], Any]:
    queue, owner = rng.choice([*QUEUES, _text(rng)]), rng.choice(["w", _text(rng)])
    opts = _options(rng, ["limit", "lease_ms", "now_ms"])
    return lambda: quick.claim(db, queue, owner, **opts)


def _settle(
    name: str, extra: Callable[[random.Random], tuple[tuple[Any, ...], dict[str, Any]]]
) -> None:
    def build(db: Database, rng: random.Random) -> Callable[[], Any]:
        claim = _claim(db, rng)
        args, opts = extra(rng)
        return lambda: getattr(quick, name)(db, claim, *args, **opts)

    _case(name)(build)


_settle(
    "complete",
    lambda r: (
        (),
        {**_options(r, ["now_ms"]), **({"result": _payload(r)} if r.random() < 0.5 else {})},
    ),
)
_settle(
    "fail",
    lambda r: (
        (_text(r),),
        _options(r, ["base_delay_ms", "max_delay_ms", "max_attempts", "delay_ms", "now_ms"]),
    ),
)
_settle("snooze", lambda r: ((_number(r),), _options(r, ["now_ms"])))
_settle("release", lambda r: ((), _options(r, ["now_ms"])))
_settle("discard", lambda r: ((_text(r),), {}))
_settle("dead_letter", lambda r: ((_text(r),), _options(r, ["now_ms"])))
_settle("heartbeat", lambda r: ((), _options(r, ["lease_ms", "now_ms"])))


@_case("cancel")
def _cancel(db: Database, rng: random.Random) -> Callable[[], Any]:
    job_id = rng.choice([_text(rng), quick.enqueue(db, "q", "t", None)])
    return lambda: quick.cancel(db, job_id)


@_case("requeue_dead")
def _requeue(db: Database, rng: random.Random) -> Callable[[], Any]:
    dead = quick.list_dead(db, "q", limit=5)
    job_id = rng.choice([d.job_id for d in dead] + [_text(rng)])
    queue = rng.choice(["q", _text(rng)])
    return lambda: db.transact(lambda tr: quick.requeue_dead(tr, queue, job_id))


#: Timeouts for ``result``: hostile ones, and only short valid ones (a pending job is
#: waited for until the timeout runs out).
RESULT_TIMEOUTS = [0, 0.001, -1, -0.0, math.nan, math.inf, 10**400, "1", True, b"1", [0]]


@_case("result")
def _result(db: Database, rng: random.Random) -> Callable[[], Any]:
    roll = rng.random()
    if roll < 0.3:
        job_id: Any = _text(rng)
    else:  # a finished job (completed with a result, or failed), or one still pending
        job_id = quick.enqueue(db, "q", "t", None)
        if roll < 0.7:
            for claim in quick.claim(db, "q", "fuzzer", limit=50):
                if claim.job_id == job_id:
                    quick.complete(db, claim, result=rng.choice([None, 1, "r", [1, {"a": b"x"}]]))
                else:
                    quick.release(db, claim)
    timeout = rng.choice(RESULT_TIMEOUTS)
    return lambda: quick.result(db, job_id, timeout=timeout)


@_case("schedule")
def _schedule(db: Database, rng: random.Random) -> Callable[[], Any]:
    expr = rng.choice(["* * * * *", "0 0 31 2 *", "bogus", "61 * * * *", "*/0 * * * *", _text(rng)])
    tz = rng.choice(["UTC", "Europe/Paris", "Mars/Base", "", _text(rng)])
    args = (
        rng.choice(["s1", _text(rng)]),
        expr,
        rng.choice(["q", _text(rng)]),
        _text(rng),
        _payload(rng),
    )
    return lambda: quick.schedule(db, *args, tz=tz)


@_case("remove_schedule")
def _remove_schedule(db: Database, rng: random.Random) -> Callable[[], Any]:
    name = rng.choice(["s1", _text(rng)])
    return lambda: quick.remove_schedule(db, name)


#: Limits beyond :func:`_number`: past a float, past msgpack, too slow to mean anything,
#: and each bound and its neighbour.
LIMIT_NUMBERS = [2**70, 10**400, -(10**400), 1e-300, 1 / 86_400, 1 / 86_401, 1_000_000,
                 1_000_001, 1e6 + 0.5, 5]  # fmt: skip


@_case("set_queue_limits")
def _set_limits(db: Database, rng: random.Random) -> Callable[[], Any]:
    def limit() -> Any:
        roll = rng.random()
        return None if roll < 0.2 else rng.choice(LIMIT_NUMBERS) if roll < 0.6 else _number(rng)

    queue = rng.choice(["q", "*", _text(rng)])
    running, rate = limit(), limit()
    return lambda: quick.set_queue_limits(db, queue, max_running=running, max_per_second=rate)


@_case("read")
def _read(db: Database, rng: random.Random) -> Callable[[], Any]:
    value = _text(rng)
    which = rng.choice(["get_job", "job_state", "list_jobs", "purge_dead"])
    if which == "get_job":
        return lambda: quick.get_job(db, value)
    if which == "job_state":
        return lambda: quick.job_state(db, value)
    if which == "list_jobs":
        limit = _number(rng)
        return lambda: quick.list_jobs(db, value, limit=limit)
    return lambda: quick.purge_dead(db, value, _text(rng))


@dataclasses.dataclass
class Failure:
    case: int
    call: str
    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"case {self.case} {self.call}: {self.kind} at {self.where}: {self.detail[:300]}"


def _dump(db: Database) -> list[tuple[bytes, bytes]]:
    return db.transact(lambda tr: tr.snapshot.get_range(b"", b"\xff"))


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f for f in frames if "/scripts/" not in f.filename] or frames
    last = inside[-1]
    return f"{Path(last.filename).name}:{last.lineno}"


def fuzz(
    cases: int, seed: int, tmp: Path, only: list[str] | None = None
) -> tuple[list[Failure], Counter[str]]:
    """Run ``cases`` random calls (of the ``only`` functions, else of all) against a fresh
    store in ``tmp``; (failures, outcomes)."""
    rng = random.Random(seed)
    failures: list[Failure] = []
    outcomes: Counter[str] = Counter()
    with quick.open(f"sqlite:///{tmp / 'fuzz.db'}") as db:
        names = sorted(only or CASES)
        for case in range(cases):
            name = rng.choice(names)
            try:
                call = CASES[name](db, rng)
            except CLEAN:
                outcomes["setup refused"] += 1
                continue
            before = _dump(db)
            try:
                call()
            except CLEAN as error:
                outcomes[f"{name} refused"] += 1
                if _dump(db) != before:
                    failures.append(
                        Failure(case, name, "refused after writing", _where(error), repr(error))
                    )
            except RecursionError as error:
                failures.append(
                    Failure(case, name, "RecursionError", _where(error), repr(error)[:200])
                )
            except Exception as error:
                failures.append(
                    Failure(case, name, type(error).__name__, _where(error), repr(error))
                )
            else:
                outcomes[f"{name} ok"] += 1
    return failures, outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="How many random calls.")
    parser.add_argument("--seed", type=int, default=1, help="Seed of the random calls.")
    parser.add_argument("--show", type=int, default=3, help="Failures shown per group.")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(CASES), help="Call only these functions."
    )
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        failures, outcomes = fuzz(args.cases, args.seed, Path(tmp), args.only)
    elapsed = time.perf_counter() - started
    groups: dict[tuple[str, str], list[Failure]] = {}
    for failure in failures:
        groups.setdefault((failure.kind, failure.where), []).append(failure)
    for (kind, where), found in sorted(groups.items(), key=lambda g: -len(g[1])):
        print(f"{len(found):6d}  {kind} at {where}")
        for failure in found[: args.show]:
            print(f"        {failure}")
    ok = sum(n for k, n in outcomes.items() if k.endswith(" ok"))
    print(f"{args.cases} cases, {ok} accepted, {len(failures)} failures, {elapsed:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
