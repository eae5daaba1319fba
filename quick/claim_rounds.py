"""The consumer's claim round: one transaction that claims a batch across due queues.

:func:`claim_round` scans one page of the pointer index (snapshot reads, so scanning
adds no conflicts), walks it from a random entry and claims from each queue it visits
as :func:`quick.claiming.claim_jobs` does, skipping any queue whose short lease another
consumer holds, until the batch is full; when nothing is due the same snapshot arms a
watch on the wake key. A retry after ``commit_unknown_result`` takes back the jobs its
committed try leased (their ids are kept in the round's :class:`~keyspace.retry.Tries`,
which must be among the transaction's arguments for the retry loop to tell it).
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

from keyspace.layout import POINTER_INDEX, QUEUE_LEASES, WAKE, queue_keys
from keyspace.protocol import KeyValue, Transaction, Watch
from keyspace.retry import Tries
from quick import pointers, queue_leases
from quick.claiming import _Budget, _reclaimed, claim_jobs, look_range
from quick.counters import Tally
from quick.jobs import Claim
from quick.limits import Limiter

__all__ = [
    "MAX_QUEUES_PER_ROUND",
    "ROUND_SPREAD",
    "ROUND_MIN_QUEUES",
    "ClaimRound",
    "claim_round",
]

#: The most queues one claim round leases from.
MAX_QUEUES_PER_ROUND = 256
#: A claim round plans to take about 1/ROUND_SPREAD of a page's due queues, each giving
#: up to ``limit`` over that many jobs: consumers scanning the same page (up to about
#: this many at once) then rarely visit the same queue and conflict, while a page of
#: 2,000 one-job queues still fills a batch of 200 (the walk goes on until it is full).
ROUND_SPREAD = 64
#: ...but at least this many queues when as many are due, so a batch is shared fairly
#: among a few due queues (each gives at most ``limit // ROUND_MIN_QUEUES`` jobs).
ROUND_MIN_QUEUES = 8


@dataclass(slots=True)
class ClaimRound:
    """What one claim round found: its claims, how many queues were due, where the next
    scan resumes, and (when nothing was due) a watch on the wake key with the next
    known visibility time."""

    claims: list[Claim]
    due: int
    cursor: bytes | None
    idle: tuple[Watch, int | None] | None = None


def claim_round(
    tr: Transaction,
    owner: str,
    now: int,
    *,
    limit: int,
    lease_ms: int,
    tries: Tries,
    cursor: bytes | None = None,
    scan_limit: int = 100,
    rng: random.Random | None = None,
    watch: bool = True,
    max_queues: int = MAX_QUEUES_PER_ROUND,
) -> ClaimRound:
    """Claim up to ``limit`` jobs across the due queues, in ``tr``; see the module docstring.

    Queues are taken from one page of ``scan_limit`` pointer-index entries (resuming
    after ``cursor``), walking on from a random entry until the batch is full. Each
    queue gives at most ``limit`` over the page's due queues divided by
    :data:`ROUND_SPREAD` (at least one job; a batch is shared among
    :data:`ROUND_MIN_QUEUES` at least), so a round over busy queues visits few of them
    and concurrent rounds rarely share one, while many one-job queues share a batch.
    Queues whose short lease another consumer holds are skipped. A round visits at
    most ``max_queues`` queues (capped at :data:`MAX_QUEUES_PER_ROUND`): a consumer
    whose rounds conflict asks for fewer.

    Retry semantics: run it with ``tries`` among the transaction's own arguments
    (``db.transact(lambda tr, tries: claim_round(tr, ..., tries=tries), Tries())``), not
    captured in a closure: only then does the retry loop tell it that a try's commit
    result was unknown, and the retry take back the jobs that try leased.
    """
    if tries.unsure:
        again = _claimed_before(tr, tries)
        if again:
            return ClaimRound(again, len(again), cursor)
    rng = rng or random.Random()
    due = _scan_due(tr, now, cursor, scan_limit)
    if not due and cursor is not None:
        cursor = None
        due = _scan_due(tr, now, None, scan_limit)
    next_cursor = due[-1] if len(due) == scan_limit else None
    if not due:
        idle = (tr.watch(WAKE), pointers.next_visible(tr.snapshot)) if watch else None
        return ClaimRound([], 0, None, idle)
    # Walk the page from a random entry (wrapping), a chunk of queues at a time, until
    # the batch is full: a round of deep queues visits a few, a round of one-job queues
    # as many as its batch needs (up to ``most``).
    start = rng.randrange(len(due))
    order = due[start:] + due[:start]
    planned = max(min(len(due), ROUND_MIN_QUEUES), len(due) // ROUND_SPREAD)
    most = max(1, min(max_queues, MAX_QUEUES_PER_ROUND))
    chunk = min(limit, most, planned)
    share = max(1, limit // chunk)
    claims: list[Claim] = []
    tally = Tally()
    budget = _Budget()
    limiter = Limiter()
    visited: list[tuple[bytes, str]] = []
    for at in range(0, min(len(order), most), chunk):
        if len(claims) >= limit or budget.left <= 0:
            break
        picked = _queues(tr, order[at : min(at + chunk, most)])
        visited += picked
        queues = [queue for _, queue in picked]
        # The chunk's leases and pointers in one round trip (snapshot: each is read
        # again serializably, from the transaction's read cache, only if its queue is visited).
        lease_keys = [QUEUE_LEASES.pack((q,)) for q in queues]
        found = tr.get_many(lease_keys + [pointers.pointer_key(q) for q in queues], snapshot=True)
        if len(queues) > 1:
            leases = found[: len(queues)]  # the pointers are read only to warm the cache
            free = [
                queue
                for queue, key, data in zip(queues, lease_keys, leases, strict=True)
                if not queue_leases.held_by_other(key, data, owner, now)
            ]
            ahead = _read_ahead(tr, free, share)
        else:
            ahead = {}
        for queue, lease_key in zip(queues, lease_keys, strict=True):
            room = min(share, limit - len(claims))
            if room <= 0 or budget.left <= 0:
                break
            if queue_leases.held_by_other(lease_key, tr.get(lease_key), owner, now):
                continue
            tries.touched.add(queue)
            rows = ahead.pop(queue, None)
            got = claim_jobs(
                tr,
                queue,
                owner,
                now,
                room,
                lease_ms,
                tries.token,
                tally=tally,
                budget=budget,
                limiter=limiter,
                tries=tries,
                look_rows=rows,
            )
            claims.extend(got)
            if rows is not None and not _plain(got, rows, room, queue):
                ahead.clear()  # it may have written to other queues: they read afresh
    tally.flush(tr)
    for key, queue in visited:
        if queue in tries.touched:
            pointers.drop_stray(tr, key, queue)
    return ClaimRound(claims, len(due), next_cursor)


def _read_ahead(tr: Transaction, free: list[str], share: int) -> dict[str, list[KeyValue]]:
    """Read what claiming from ``free`` (up to ``share`` jobs each) will read, issued
    together instead of queue by queue: their job indexes (the range
    :func:`~quick.claiming.look_range` names; ``free`` are the queues no other consumer
    holds, as the leases already read ahead say) and the records of the ready jobs
    those show; the rows of each queue's index read, by queue.

    All are snapshot reads, so reading ahead adds no conflict: each claim then reads its
    job records again serializably (answered by the transaction's
    read cache) and adds the conflict range of its index read by hand, exactly what it
    would have read and covered on its own (see ``quick.claiming._look``). Each index
    read is limited to ``share + 1`` rows, what a claim of ``share`` jobs reads, so a
    deep queue among them costs no more than its claim; the job records read ahead are
    those of at most ``share`` ready entries a queue.
    """
    all_keys = [queue_keys(q) for q in free]
    found = tr.get_ranges([look_range(keys, share) for keys in all_keys], snapshot=True)
    jobs: list[bytes] = []
    for keys, rows in zip(all_keys, found, strict=True):
        ready_end = keys.ready_range()[1]
        for key, _ in rows[:share]:
            if key >= ready_end:
                break
            with contextlib.suppress(Exception):  # claim_jobs clears an entry that does not unpack
                jobs.append(keys.job(keys.unpack_ready(key)[-1]))
    if jobs:
        tr.get_many(jobs, snapshot=True)
    return dict(zip(free, found, strict=True))


def _plain(claims: list[Claim], rows: list[KeyValue], room: int, queue: str) -> bool:
    """Whether a claim from rows read ahead leased every ready job it saw (up to ``room``)
    and no extension was told: then it wrote only to its own queue's keys (and counters),
    and the other queues' rows read ahead are still current. Otherwise (a job buried,
    parked, repaired; a limit; an extension's hook) it may have written elsewhere, for
    instance enqueued a dead job's dependents, and the round reads the rest afresh."""
    if any(claim.extension is not None for claim in claims):
        return False
    ready_end = queue_keys(queue).ready_range()[1]
    seen = sum(1 for key, _ in rows[: room + 1] if key < ready_end)
    return len(claims) == min(room, seen)


def _scan_due(tr: Transaction, now: int, cursor: bytes | None, limit: int) -> list[bytes]:
    """Keys of up to ``limit`` due pointer-index entries after ``cursor`` (snapshot reads)."""
    begin, _ = POINTER_INDEX.range()
    if cursor is not None:
        begin = max(begin, cursor + b"\x00")
    end = POINTER_INDEX.pack((now + 1,))
    return [key for key, _ in tr.snapshot.get_range(begin, end, limit=limit)]


def _queues(tr: Transaction, keys: list[bytes]) -> list[tuple[bytes, str]]:
    """``(index key, queue)`` of ``keys``; keys that do not unpack are cleared (and named)."""
    out = []
    for key in keys:
        entry = pointers.unpack_index(key)
        if entry is None:
            tr.clear(key)
        else:
            out.append((key, entry[1]))
    return out


def _claimed_before(tr: Transaction, tries: Tries) -> list[Claim]:
    """The claims an earlier, committed try of this round made (none if it did not commit):
    of the jobs leased by tries whose commit result was unknown, those that still carry
    the round's token, leased."""
    out: list[Claim] = []
    by_queue: dict[str, list[str]] = {}
    for job_id, queue in sorted(tries.unsure.items()):
        by_queue.setdefault(queue, []).append(job_id)
    for queue, job_ids in sorted(by_queue.items()):
        out.extend(_reclaimed(tr, queue_keys(queue), job_ids, tries.token))
    return out
