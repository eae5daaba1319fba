"""quick: a QuiCK-style distributed job queue on FoundationDB.

Jobs live in per-queue (per-tenant) key ranges ordered by priority and visibility
time; a pointer index lists the queues with visible work; consumers lease a queue,
then a batch of its jobs. Enqueue can join the caller's own transaction.
"""

from keyspace import (
    EngineUnavailable,
    InvalidURL,
    QuickError,
    StorageError,
    StoreFull,
    open,
    transactional,
)
from keyspace.protocol import Database, Transaction
from quick.app import App, JobConfig, Meta
from quick.claiming import claim
from quick.cron import Schedule, activate_due, list_schedules, remove_schedule, schedule
from quick.enqueueing import enqueue, enqueue_many
from quick.errors import (
    CorruptResult,
    Discard,
    InvalidArgument,
    InvalidPayload,
    JobCancelled,
    JobDeadLettered,
    JobDiscarded,
    JobNotFound,
    JobRunning,
    LeaseLost,
    QueueMoved,
    ResultTimeout,
    ResultUnavailable,
    Snooze,
)
from quick.inspection import (
    DeadLetter,
    get_job,
    job_state,
    list_dead,
    list_jobs,
    list_queues,
    queue_counts,
)
from quick.jobs import Claim, Job, JobState
from quick.leases import (
    complete,
    dead_letter,
    discard,
    fail,
    heartbeat,
    release,
    snooze,
)
from quick.limits import QueueLimits, get_queue_limits, list_queue_limits, set_queue_limits
from quick.migration import MigrationReport, Refusal, migrate
from quick.operations import cancel, purge_dead, purge_finished, requeue_dead
from quick.outcomes import Outcome, run_claim
from quick.pointers import collect_empty_pointer
from quick.results import result


def __getattr__(name: str) -> object:
    """``quick.aio``, imported on first use: ``import quick`` stays free of anyio."""
    if name == "aio":
        import importlib

        return importlib.import_module("quick.aio")
    raise AttributeError(f"module 'quick' has no attribute {name!r}")


__all__ = [
    "Transaction",
    "App",
    "Claim",
    "CorruptResult",
    "Database",
    "DeadLetter",
    "Discard",
    "EngineUnavailable",
    "InvalidArgument",
    "InvalidPayload",
    "InvalidURL",
    "Job",
    "JobCancelled",
    "JobConfig",
    "JobDeadLettered",
    "JobDiscarded",
    "JobNotFound",
    "JobRunning",
    "JobState",
    "LeaseLost",
    "Meta",
    "MigrationReport",
    "Outcome",
    "QueueLimits",
    "QuickError",
    "QueueMoved",
    "Refusal",
    "ResultTimeout",
    "ResultUnavailable",
    "Schedule",
    "Snooze",
    "StorageError",
    "StoreFull",
    "activate_due",
    "aio",
    "cancel",
    "claim",
    "collect_empty_pointer",
    "complete",
    "dead_letter",
    "discard",
    "enqueue",
    "enqueue_many",
    "fail",
    "get_job",
    "get_queue_limits",
    "heartbeat",
    "job_state",
    "list_dead",
    "list_jobs",
    "list_queue_limits",
    "list_queues",
    "list_schedules",
    "migrate",
    "open",
    "purge_dead",
    "purge_finished",
    "queue_counts",
    "release",
    "remove_schedule",
    "requeue_dead",
    "result",
    "run_claim",
    "schedule",
    "set_queue_limits",
    "snooze",
    "transactional",
]
