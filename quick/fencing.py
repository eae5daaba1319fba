"""One answer to "is this claim still mine?", for every operation on a claim.

A claim fences its job with the lease token it was given. :func:`standing` reads the
job (and, when it is gone, its directory tombstone) and says one of:

* ``HELD``: the job is leased under this claim's token; the claim may act on it.
  (A lease that expired but that nobody has claimed again is still held.)
* ``SETTLED``: this claim already settled the job, in an earlier try of the caller's
  transaction (a retry after ``commit_unknown_result``) or an earlier call: the job
  was finished (the tombstone carries the token and the outcome) or put back on the
  queue (it keeps the token but has no owner).
* ``LOST``: someone else holds the job now, or it is gone, or its record is corrupt.

Operations act on ``HELD``, answer as their earlier try did on ``SETTLED``, and raise
:class:`~quick.errors.LeaseLost` (changing nothing) on ``LOST``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from keyspace.codec import CorruptValue, unpack_value
from keyspace.layout import JOB_DIRECTORY, QueueKeys, queue_keys
from keyspace.protocol import Transaction
from quick.errors import LeaseLost
from quick.jobs import Claim, Job
from quick.records import load_job

__all__ = ["Status", "Standing", "standing", "held_job"]


class Status(Enum):
    """Where a claim stands with its job."""

    HELD = "held"
    SETTLED = "settled"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Standing:
    """The answer of :func:`standing`.

    ``job`` is the stored job when there is one under this claim's token; ``outcome``
    is how this claim finished it (``completed``, ``dead``, ...) or ``"put_back"``;
    ``reason`` says why a claim is lost.
    """

    status: Status
    keys: QueueKeys
    job: Job | None = None
    outcome: str | None = None
    reason: str = ""

    def lost(self, claim: Claim) -> LeaseLost:
        return LeaseLost(claim.job_id, self.reason)


def standing(tr: Transaction, claim: Claim) -> Standing:
    """Where ``claim`` stands with its job, read serializably in ``tr``."""
    keys = queue_keys(claim.queue_id)
    try:
        job = load_job(tr, keys, claim.job_id)
    except CorruptValue as error:
        return Standing(Status.LOST, keys, reason=f"the job record is corrupt: {error}")
    if job is not None and job.token == claim.token:
        if job.owner is None:
            return Standing(Status.SETTLED, keys, job, "put_back")
        return Standing(Status.HELD, keys, job)
    data = tr.get(JOB_DIRECTORY.pack((claim.job_id,)))
    if data is not None:
        try:
            entry = unpack_value(data)
        except CorruptValue:
            entry = None
        if isinstance(entry, dict) and entry.get("k") == claim.token and "s" in entry:
            return Standing(Status.SETTLED, keys, None, str(entry["s"]))
    if job is None:
        return Standing(Status.LOST, keys, reason="the job is no longer in its queue")
    return Standing(
        Status.LOST, keys, job, reason=f"it was claimed again (now held by {job.owner})"
    )


def held_job(tr: Transaction, claim: Claim) -> tuple[QueueKeys, Job]:
    """The claim's job while it is held; LeaseLost otherwise (settled included)."""
    found = standing(tr, claim)
    if found.status is Status.HELD:
        assert found.job is not None
        return found.keys, found.job
    if found.status is Status.SETTLED:
        raise LeaseLost(claim.job_id, "this claim already settled the job")
    raise found.lost(claim)
