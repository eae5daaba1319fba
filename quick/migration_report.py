"""A migration pass's report, its running tally, and the batch limits every part obeys."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BATCH_BYTES",
    "BATCH_JOBS",
    "PAGE",
    "MigrationReport",
    "PassTally",
    "QUEUE_THREADS",
    "Refusal",
]

#: Jobs (or dead letters) per copy transaction: a few hundred keep each well inside
#: FoundationDB's 5-second and 10 MB limits while a pass still moves thousands a second.
BATCH_JOBS = 200
#: Record bytes per copy transaction: FoundationDB advises under 1 MB per transaction.
BATCH_BYTES = 1_000_000
#: Keys per read transaction when listing queues, runs, schedules and staged jobs.
PAGE = 500
#: Queues a pass moves at once, each in a thread of its own: a queue takes a dozen
#: short transactions in turn, so on a remote cluster a pass over hundreds of queues is
#: bound by round trips, not by either store; a few at once stay gentle on both.
QUEUE_THREADS = 8


@dataclass(frozen=True, slots=True)
class Refusal:
    """A queue (or part of one) the pass did not move, and why."""

    queue: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationReport:
    """What one pass moved, and what it left.

    ``duplicates`` are source jobs whose id the destination already knew (deleted from
    the source without a copy); ``leased`` are jobs left because a consumer holds them;
    ``remaining`` counts the jobs still on the source in the queues the pass took;
    ``busy`` are queues another pass was moving (this one left them to it);
    ``tombstones`` are finished jobs' directory entries copied so their ids still dedupe.
    """

    queues: tuple[str, ...] = ()
    jobs: int = 0
    dead_letters: int = 0
    unique_keys: int = 0
    cron_schedules: int = 0
    duplicates: int = 0
    leased: int = 0
    remaining: int = 0
    refused: tuple[Refusal, ...] = ()
    busy: tuple[str, ...] = ()
    tombstones: int = 0

    @property
    def finished(self) -> bool:
        """True when every queue taken is empty on the source, none was refused, and no
        other pass was still moving one."""
        return self.remaining == 0 and not self.refused and not self.busy

    def plus(self, later: MigrationReport) -> MigrationReport:
        """This pass followed by ``later``: sums of what moved, ``later``'s leftovers."""
        return MigrationReport(
            queues=tuple(dict.fromkeys(self.queues + later.queues)),
            jobs=self.jobs + later.jobs,
            dead_letters=self.dead_letters + later.dead_letters,
            unique_keys=self.unique_keys + later.unique_keys,
            cron_schedules=self.cron_schedules + later.cron_schedules,
            duplicates=self.duplicates + later.duplicates,
            leased=later.leased,
            remaining=later.remaining,
            refused=later.refused,
            busy=later.busy,
            tombstones=self.tombstones + later.tombstones,
        )


@dataclass(slots=True)
class PassTally:
    """A pass's running totals (frozen into a report at the end)."""

    queues: list[str] = field(default_factory=list)
    jobs: int = 0
    dead_letters: int = 0
    unique_keys: int = 0
    cron_schedules: int = 0
    duplicates: int = 0
    leased: int = 0
    remaining: int = 0
    refused: list[Refusal] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    tombstones: int = 0

    def absorb(self, other: PassTally) -> None:
        """Add the totals of ``other`` (one queue's, moved in another thread)."""
        self.queues += other.queues
        self.jobs += other.jobs
        self.dead_letters += other.dead_letters
        self.unique_keys += other.unique_keys
        self.cron_schedules += other.cron_schedules
        self.duplicates += other.duplicates
        self.leased += other.leased
        self.remaining += other.remaining
        self.refused += other.refused
        self.busy += other.busy
        self.tombstones += other.tombstones

    def report(self) -> MigrationReport:
        return MigrationReport(
            queues=tuple(self.queues),
            jobs=self.jobs,
            dead_letters=self.dead_letters,
            unique_keys=self.unique_keys,
            cron_schedules=self.cron_schedules,
            duplicates=self.duplicates,
            leased=self.leased,
            remaining=self.remaining,
            refused=tuple(self.refused),
            busy=tuple(dict.fromkeys(self.busy)),
            tombstones=self.tombstones,
        )
