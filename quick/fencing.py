"""One answer to "is this claim still mine?", for every operation on a claim.

A claim fences its job with the lease token it was given. :func:`standing` reads the
job (and, when it is gone, its directory tombstone) and says one of:

* ``HELD``: the job is leased under this claim's token; the claim may act on it.
  (A lease that expired but that nobody has claimed again is still held.)
* ``SETTLED``: this claim already settled the job, in an earlier try of the caller's
  transaction (a retry after ``commit_unknown_result``) or an earlier call: the job
  was finished (the tombstone carries the token and the outcome) or put back on the
  queue (it keeps the token but has no owner).
* ``LOST``: someone else holds the job now, or it is gone (an operator cancelled or
  moved it), or its record is corrupt.

This module only reads. What a standing means for an operation is decided in one
place, the table of :mod:`quick.settlement`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import JOB_DIRECTORY, QueueKeys, queue_keys
from keyspace.protocol import Transaction
from quick.jobs import Claim, Job
from quick.settlement import Outcome, Status, earlier_outcome

__all__ = ["Status", "Standing", "standing", "standings"]


@dataclass(frozen=True, slots=True)
class Standing:
    """The answer of :func:`standing`.

    ``job`` is the stored job when there is one under this claim's token; ``outcome``
    is how this claim settled it when SETTLED (``REQUEUED`` for any put-back);
    ``reason`` says why a claim is lost.
    """

    status: Status
    keys: QueueKeys
    job: Job | None = None
    outcome: Outcome | None = None
    reason: str = ""


def standing(tr: Transaction, claim: Claim) -> Standing:
    """Where ``claim`` stands with its job, read serializably in ``tr``."""
    return standings(tr, [claim])[0]


def standings(tr: Transaction, claims: Sequence[Claim]) -> list[Standing]:
    """:func:`standing` for many claims, reading their jobs (then the tombstones of those not
    held) each in one batch: two round trips however many claims there are."""
    keys = [queue_keys(claim.queue_id) for claim in claims]
    records = tr.get_many([k.job(claim.job_id) for k, claim in zip(keys, claims, strict=True)])
    out: list[Standing | None] = []
    unheld: list[int] = []
    for i, (claim, qkeys, data) in enumerate(zip(claims, keys, records, strict=True)):
        try:
            job = None if data is None else Job.from_value(qkeys.queue, claim.job_id, data)
        except CorruptValue as error:
            out.append(Standing(Status.LOST, qkeys, reason=f"the job record is corrupt: {error}"))
            continue
        if job is not None and job.token == claim.token:
            if job.owner is None:
                out.append(Standing(Status.SETTLED, qkeys, job, Outcome.REQUEUED))
            else:
                out.append(Standing(Status.HELD, qkeys, job))
            continue
        out.append(Standing(Status.LOST, qkeys, job))  # unless its tombstone says otherwise
        unheld.append(i)
    if unheld:
        entries = tr.get_many([JOB_DIRECTORY.pack((claims[i].job_id,)) for i in unheld])
        for i, data in zip(unheld, entries, strict=True):
            previous = out[i]
            out[i] = _judge_gone(claims[i], keys[i], previous.job if previous else None, data)
    return [found for found in out if found is not None]


def _judge_gone(
    claim: Claim, keys: QueueKeys, job: Job | None, entry_data: bytes | None
) -> Standing:
    """The standing of a claim whose token is not on the job: settled if the job's
    tombstone carries the token, else lost."""
    if entry_data is not None:
        try:
            entry = unpack_value(entry_data)
        except CorruptValue:
            entry = None
        if isinstance(entry, dict) and entry.get("k") == claim.token and "s" in entry:
            settled = earlier_outcome(entry["s"])
            if settled is not None:
                return Standing(Status.SETTLED, keys, None, settled)
            if job is None:  # finished by an operator (cancelled, moved), not by a claim
                return Standing(Status.LOST, keys, reason=f"the job was {entry['s']} meanwhile")
    if job is None:
        return Standing(Status.LOST, keys, reason="the job is no longer in its queue")
    return Standing(
        Status.LOST, keys, job, reason=f"it was claimed again (now held by {job.owner})"
    )
