"""Cron schedules: jobs enqueued on a cron expression, exactly once per tick.

Each schedule is one key holding its expression, timezone, target and next run time.
:func:`activate_due` enqueues the job of every due schedule and advances its next run
time *in the same transaction*, so however many consumers run activators, each tick
is enqueued once: concurrent activators conflict on the schedule key and the loser,
retried, finds the tick already taken. The tick's job id is derived from the schedule
and the tick time, so a retry after ``commit_unknown_result`` adds nothing either; the
ids of a try whose commit result was unknown are kept outside the retry loop, and the
retry returns those its schedule records show that try committed (each record carries
the token, field ``a``, of the activation that last fired it; see ``_activate_batch``).
After downtime, the missed ticks coalesce into one run; the next run time is computed
from *now*. A schedule whose queue ``quick migrate`` moved away (the migration moves
the schedules with it; this is one created on the old store later) skips its ticks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass
from typing import Any

from croniter import CroniterError, croniter

from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.errors import QuickError
from keyspace.layout import CRON, CRON_DUE, describe
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries, transactional
from quick.corruption import UNREADABLE, CorruptRecord
from quick.enqueueing import prefetch, prepare, store_new
from quick.errors import InvalidArgument, QueueMoved
from quick.jobs import now_ms
from quick.paging import Page, read_pages
from quick.validation import check_name

log = logging.getLogger("quick.store")

__all__ = [
    "Schedule",
    "schedule",
    "list_schedules",
    "scan_schedules",
    "remove_schedule",
    "activate_due",
    "decode_schedule",
    "next_fire_ms",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A cron schedule and when it next fires."""

    name: str
    cron: str
    tz: str
    queue_id: str
    topic: str
    payload: Any
    next_ms: int


def _zone(tz: Any) -> zoneinfo.ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise InvalidArgument("tz", f"must be an IANA timezone name, not {tz!r}")
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        raise InvalidArgument("tz", f"unknown timezone {tz!r}") from None


#: Schedule names leave room for the tick's job id, ``cron:<name>:<tick_ms>``.
MAX_SCHEDULE_NAME_BYTES = 200


def _check_cron(expr: Any, tz: str) -> int:
    """The next tick of a valid, satisfiable expression from now; InvalidArgument otherwise."""
    if not isinstance(expr, str) or not croniter.is_valid(expr):
        raise InvalidArgument("cron_expr", f"{expr!r} is not a valid cron expression")
    try:
        return next_fire_ms(expr, tz, now_ms())
    except (CroniterError, ValueError):
        raise InvalidArgument("cron_expr", f"{expr!r} never fires (no such date)") from None


def next_fire_ms(expr: str, tz: str, after_ms: int) -> int:
    """The first tick of ``expr`` in ``tz`` strictly after ``after_ms``."""
    start = dt.datetime.fromtimestamp(after_ms / 1000, tz=_zone(tz))
    fire: dt.datetime = croniter(expr, start).get_next(dt.datetime)
    return int(fire.timestamp() * 1000)


def decode_schedule(name: str, value: bytes) -> Schedule:
    """The schedule ``name`` stored as ``value``.

    Raises:
        CorruptValue: the record does not decode, or not to a schedule.
    """
    record = unpack_value(value)
    if not isinstance(record, dict) or not isinstance(name, str):
        raise CorruptValue(f"schedule record is a {type(record).__name__}, not a map")
    texts = [record.get(f) for f in ("cr", "tz", "q", "t")]
    if not all(isinstance(t, str) for t in texts) or not isinstance(record.get("n"), int):
        raise CorruptValue(f"schedule record of the wrong shape: {record!r}")
    return Schedule(
        name=name,
        cron=record["cr"],
        tz=record["tz"],
        queue_id=record["q"],
        topic=record["t"],
        payload=record.get("p"),
        next_ms=record["n"],
    )


def _encode(item: Schedule, token: str | None = None) -> bytes:
    record = {
        "cr": item.cron,
        "tz": item.tz,
        "q": item.queue_id,
        "t": item.topic,
        "p": item.payload,
        "n": item.next_ms,
    }
    if token is not None:
        record["ak"] = token  # the activation that last fired it (see _activate_batch)
    return pack_value(record)


def schedule(
    db: Database | Transaction,
    name: str,
    cron_expr: str,
    queue_id: str,
    topic: str,
    payload: Any,
    tz: str = "UTC",
) -> Schedule:
    """Create or replace the schedule ``name``: enqueue ``topic`` on ``queue_id`` per ``cron_expr``.

    Raises:
        InvalidArgument: a malformed cron expression, unknown timezone, or bad name/queue/topic.
        InvalidPayload: a payload msgpack cannot encode.
    """
    check_name("name", name)
    if len(name.encode("utf-8")) > MAX_SCHEDULE_NAME_BYTES:
        raise InvalidArgument("name", f"must be at most {MAX_SCHEDULE_NAME_BYTES} bytes")
    _zone(tz)
    first = _check_cron(cron_expr, tz)
    prepare(queue_id, topic, payload)
    item = Schedule(
        name=name,
        cron=cron_expr,
        tz=tz,
        queue_id=queue_id,
        topic=topic,
        payload=payload,
        next_ms=first,
    )
    _put(db, item)
    return item


@transactional
def _put(tr: Transaction, item: Schedule, token: str | None = None) -> None:
    key = CRON.pack((item.name,))
    _clear_due(tr, item.name, tr.get(key))
    tr.set(key, _encode(item, token))
    tr.set(CRON_DUE.pack((item.next_ms, item.name)), b"")


#: Schedules a listing reads per transaction.
SCHEDULE_PAGE = 1000


def list_schedules(db_or_tr: Database | Transaction) -> list[Schedule]:
    """Every schedule, by name (read as :func:`scan_schedules` reads them).

    Raises:
        CorruptValue: a schedule record does not decode.
    """
    out = []
    for item in scan_schedules(db_or_tr):
        if isinstance(item, CorruptRecord):
            raise CorruptValue(f"{describe(item.key)}: {item.error}")
        out.append(item)
    return out


def scan_schedules(db_or_tr: Database | Transaction) -> list[Schedule | CorruptRecord]:
    """Every schedule, by name; one that does not decode as a :class:`CorruptRecord`.

    Given a database, :data:`SCHEDULE_PAGE` schedules are read per transaction (see
    :mod:`quick.paging`): each page is one snapshot, the listing is not (a schedule
    added, removed or fired while it runs may show either way). Given a transaction,
    every page is read in it.
    """
    return read_pages(db_or_tr, _schedule_page, CRON.range()[0])


def _schedule_page(tr: Transaction, begin: bytes) -> Page[Schedule | CorruptRecord]:
    rows = tr.snapshot.get_range(begin, CRON.range()[1], limit=SCHEDULE_PAGE)
    out: list[Schedule | CorruptRecord] = []
    for key, value in rows:
        try:
            out.append(decode_schedule(CRON.unpack(key)[0], value))
        except UNREADABLE as error:
            out.append(CorruptRecord.of(key, error))
    return out, rows[-1][0] if len(rows) >= SCHEDULE_PAGE else None


def remove_schedule(db_or_tr: Database | Transaction, name: str) -> bool:
    """Delete the schedule ``name``; False if there was none.

    Retry semantics: a retry after ``commit_unknown_result`` whose earlier try found
    the schedule answers True, since that try removed it (or another caller did).
    """
    return _remove_schedule(db_or_tr, name, Tries())


@transactional
def _remove_schedule(tr: Transaction, name: str, earlier: Tries) -> bool:
    key = CRON.pack((name,))
    old = tr.get(key)
    if old is None:
        return bool(earlier.found)
    earlier.found = 1
    tr.clear(key)
    _clear_due(tr, name, old)
    return True


def _clear_due(tr: Transaction, name: str, old: bytes | None) -> None:
    """Clear the due entry of the stored schedule ``old``; a corrupt one names none (its
    stray entry, if any, is cleared by activation, which finds the record changed)."""
    if old is None:
        return
    try:
        tr.clear(CRON_DUE.pack((decode_schedule(name, old).next_ms, name)))
    except CorruptValue as error:
        log.warning("corrupt cron schedule %s replaced: %s", describe(CRON.pack((name,))), error)


@transactional
def _activate(tr: Transaction, now: int, limit: int, token: str) -> tuple[dict[str, str], bool]:
    """Fire up to ``limit`` due schedules, marking each with ``token``; ({job id: schedule
    name}, whether more may be due)."""
    enqueued: dict[str, str] = {}
    due = tr.snapshot.get_range(CRON_DUE.range()[0], CRON_DUE.pack((now + 1,)), limit=limit)
    names: list[str] = []
    for due_key, _ in due:
        name = _due_name(due_key)
        if name is None:
            log.warning("corrupt cron due entry %s: cleared", describe(due_key))
            tr.clear(due_key)
        names.append(name or "")
    values = tr.get_many([CRON.pack((name,)) for name in names])  # one round trip for all
    firing: list[tuple[Schedule, Any, int]] = []
    for (due_key, _), name, value in zip(due, names, values, strict=True):
        if value is None:
            tr.clear(due_key)
            continue
        try:
            item = decode_schedule(name, value)
            if CRON_DUE.pack((item.next_ms, name)) != due_key:
                tr.clear(due_key)  # a stray: the record names another time
                continue
            job = prepare(
                item.queue_id,
                item.topic,
                item.payload,
                job_id=f"cron:{item.name}:{item.next_ms}",
                now=now,
            )
            following = next_fire_ms(item.cron, item.tz, now)
        except (QuickError, CroniterError, ValueError, TypeError, OverflowError) as error:
            # Set aside: the record stays (for an operator, ``quick check --deep``) but
            # leaves the due index, so it neither fires nor blocks the schedules after it.
            log.warning(
                "corrupt cron schedule %s: %s; set aside", describe(CRON.pack((name,))), error
            )
            tr.clear(due_key)
            continue
        firing.append((item, job, following))
    prefetch(tr, [job for _, job, _ in firing])  # every enqueue's reads in one round trip
    for item, job, following in firing:
        # A queue moved to another store skips the tick (the check precedes any write),
        # rather than failing every activation from now on.
        with contextlib.suppress(QueueMoved):
            enqueued[store_new(tr, job)] = item.name
        _put(tr, Schedule(**{**_fields(item), "next_ms": following}), token)
    return enqueued, len(due) == limit


def _due_name(key: bytes) -> str | None:
    """The schedule name of a due-index key; None when the key is not ``(next_ms, name)``."""
    try:
        next_ms, name = CRON_DUE.unpack(key)
    except Exception:  # fdb.tuple raises several kinds on foreign bytes
        return None
    return name if isinstance(name, str) and isinstance(next_ms, int) else None


def _fields(item: Schedule) -> dict[str, Any]:
    return {name: getattr(item, name) for name in Schedule.__dataclass_fields__}


def _activate_batch(db: Database, now: int, limit: int) -> tuple[list[str], bool]:
    """Run one activation transaction until it commits; (job ids, whether more may be due).

    A try that fails with ``commit_unknown_result`` may have committed: its retry finds
    those ticks no longer due, yet the answer must name them. So the ids such tries
    fired are kept before the retry loop (in its :class:`~keyspace.retry.Tries`), with a
    token made there too, which every try writes on the schedules it fires; the retry
    reports a kept id when its schedule still carries the token (that try committed),
    and not when another activator's does (that try did not, and the other activator
    fired the tick and reports it).
    """
    return db.transact(_activate_try, now, limit, Tries())


def _activate_try(tr: Transaction, now: int, limit: int, tries: Tries) -> tuple[list[str], bool]:
    """One try of :func:`_activate_batch`: its activation, and the ids of tries whose
    commit result was unknown that its schedules show committed."""
    tries.first()
    earlier = _marked(tr, tries.unsure, tries.token)
    fired, more = _activate(tr, now, limit, tries.token)
    tries.did(fired)
    return list(dict.fromkeys([*earlier, *fired])), more


def _marked(tr: Transaction, tried: dict[str, str], token: str) -> list[str]:
    """The job ids of ``tried`` whose schedule was last fired by the activation ``token``
    (every schedule read in one round trip)."""
    if not tried:
        return []
    values = tr.get_many([CRON.pack((name,)) for name in tried.values()])
    marked = []
    for job_id, value in zip(tried, values, strict=True):
        try:
            record = None if value is None else unpack_value(value)
        except CorruptValue:
            continue
        if isinstance(record, dict) and record.get("ak") == token:
            marked.append(job_id)
    return marked


def activate_due(db: Database, *, now: int | None = None, limit: int = 500) -> list[str]:
    """Enqueue one job for every schedule due at ``now`` (``limit`` per transaction);
    return the job ids.

    Retry semantics: a transaction retried after ``commit_unknown_result`` still
    returns the ids its earlier try fired when that try committed, and only then.
    """
    at = now_ms() if now is None else now
    fired: list[str] = []
    while True:
        ids, more = _activate_batch(db, at, limit)
        fired.extend(ids)
        if not more:
            return fired
