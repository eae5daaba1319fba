"""What a finished job tells the jobs that follow it: its batch, and its dependents.

:mod:`quick.records` calls :func:`job_finished` in the transaction that finishes a job
whose record carries a batch id (``b``) or the dependents flag (``dn``); a plain job
never gets here, so settling it costs nothing more. Imported on first use (it
enqueues, and enqueueing imports the records module).
"""

from __future__ import annotations

from keyspace.protocol import Transaction
from quick.batches import member_finished
from quick.dependencies import dependency_finished
from quick.jobs import Job, JobState

__all__ = ["job_finished"]


def job_finished(tr: Transaction, job: Job, state: JobState, now: int) -> None:
    """Count ``job`` in its batch and settle its dependents, in ``tr``."""
    if job.batch is not None:
        member_finished(tr, job, state)
    if job.has_dependents:
        dependency_finished(tr, job, state, now)
