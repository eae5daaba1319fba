"""How a claim's attempt ends: one pure table from (standing, ending, last attempt?) to an action.

Theory of operation
-------------------
Settling an attempt is three steps, each in one place:

1. :func:`quick.fencing.standings` reads where the claim stands with its job
   (:class:`Status`: held, settled by this claim already, or lost) and, when settled,
   the :class:`Outcome` the earlier settlement left behind.
2. :func:`decide` (here, pure: no transaction, no clock) maps that standing, how the
   attempt ended (:class:`Ending`) and whether it was the job's last attempt to one
   :class:`Action`: finish the job with a state, put it back (visible again later, its
   attempt refunded or not), bury it (dead-letter), renew its lease, already done (an
   earlier try of the same call did it: answer as it did), or lost.
3. :func:`quick.records.apply` writes the action to the job's records, and
   :func:`quick.leases.apply` tells the job's extension (a workflow step) what happened.

Every legal transition lives in :data:`HELD` and :data:`ALREADY`, as h11 keeps its
state machine in one table: a new way for an attempt to end is a new row, not a new
branch in the functions that settle. :func:`is_last_attempt` is the one answer to "was
that the last attempt?".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from quick.jobs import JobState

__all__ = [
    "Outcome",
    "Status",
    "Ending",
    "Act",
    "Hook",
    "Action",
    "HELD",
    "ALREADY",
    "LOST",
    "decide",
    "is_last_attempt",
    "earlier_outcome",
]


class Outcome(StrEnum):
    """How one attempt ended: what settling it returns, and what a claim's earlier
    settlement left behind (:attr:`quick.fencing.Standing.outcome`)."""

    COMPLETED = "completed"
    #: Put back on its queue to run again (a failure with attempts left). As an earlier
    #: settlement: any put-back (failed, snoozed or released), since all look alike.
    REQUEUED = "requeued"
    DEAD_LETTERED = "dead_lettered"
    SNOOZED = "snoozed"
    DISCARDED = "discarded"
    LEASE_LOST = "lease_lost"
    #: An extension's job whose last attempt failed (the extension recorded it).
    FAILED = "failed"
    #: An unstarted claim given back (a consumer stopping).
    RELEASED = "released"
    #: ``quick.cancel`` stopped the job while this claim held it: it finished as
    #: cancelled, whatever its handler did.
    CANCELLED = "cancelled"


class Status(Enum):
    """Where a claim stands with its job (see :mod:`quick.fencing`)."""

    HELD = "held"
    SETTLED = "settled"
    LOST = "lost"


class Ending(Enum):
    """How an attempt ended, or what a claim's holder asks for."""

    SUCCEEDED = "succeeded"
    #: Failed with an error: retried, unless it was the last attempt.
    FAILED = "failed"
    #: Failed, and it was the job's last attempt (:func:`decide` tells the two apart).
    FAILED_LAST = "failed_last"
    SNOOZED = "snoozed"
    DISCARDED = "discarded"
    #: No handler is registered for the job's topic.
    NO_HANDLER = "no_handler"
    #: The job names an extension this process did not register.
    UNLOADABLE = "unloadable"
    #: The holder moves the job to the dead letters (``quick.dead_letter``).
    DEAD_LETTER = "dead_letter"
    #: An unstarted claim is given back.
    RELEASED = "released"
    #: The holder extends its lease (a heartbeat).
    RENEW = "renew"
    #: The job carries the cancel mark (``quick.cancel`` while it was leased): whatever
    #: its handler did, it finishes as cancelled (:func:`decide` turns any other ending
    #: of a marked job into this one).
    CANCELLED = "cancelled"


class Act(Enum):
    """What happens to the job's records."""

    FINISH = "finish"
    PUT_BACK = "put_back"
    BURY = "bury"
    RENEW = "renew"
    #: An earlier try of the same call settled it: write nothing, answer as it did.
    DONE = "done"
    LOST = "lost"


class Hook(Enum):
    """What the job's extension is told (:class:`quick.extensions.JobExtension`)."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Action:
    """One row of the table: what to write and what to answer.

    ``state`` is the state a finished job's tombstone records, or the state a job put
    back waits in; ``refund`` gives a put-back job its attempt back; ``records_error``
    makes the attempt's error the job's last error (a bury always records it).
    """

    act: Act
    outcome: Outcome
    state: JobState | None = None
    refund: bool = False
    records_error: bool = False
    hook: Hook | None = None


_COMPLETE = Action(Act.FINISH, Outcome.COMPLETED, JobState.COMPLETED)
_DISCARD = Action(Act.FINISH, Outcome.DISCARDED, JobState.DISCARDED, records_error=True)
_BURY = Action(Act.BURY, Outcome.DEAD_LETTERED)
_RETRY = Action(Act.PUT_BACK, Outcome.REQUEUED, JobState.SCHEDULED, records_error=True)
_SNOOZE = Action(Act.PUT_BACK, Outcome.SNOOZED, JobState.SCHEDULED, refund=True)
_RELEASE = Action(Act.PUT_BACK, Outcome.RELEASED, JobState.READY, refund=True)
_RENEW = Action(Act.RENEW, Outcome.COMPLETED)  # outcome unused: a renewal ends nothing
_EXT_COMPLETE = Action(Act.FINISH, Outcome.COMPLETED, JobState.COMPLETED, hook=Hook.SUCCEEDED)
_EXT_RETRY = Action(
    Act.PUT_BACK, Outcome.REQUEUED, JobState.SCHEDULED, records_error=True, hook=Hook.RETRYING
)
#: An extension owns what happens after its job's last failure: the job finishes as
#: discarded (not dead-lettered) and the extension records the failure.
_EXT_FAIL = Action(
    Act.FINISH, Outcome.FAILED, JobState.DISCARDED, records_error=True, hook=Hook.FAILED
)
_CANCEL = Action(Act.FINISH, Outcome.CANCELLED, JobState.CANCELLED)
#: A cancelled extension's job (a workflow step) ends its extension's way: as failed,
#: so the run moves on instead of waiting for a step that will never report.
_EXT_CANCEL = Action(
    Act.FINISH, Outcome.CANCELLED, JobState.CANCELLED, records_error=True, hook=Hook.FAILED
)

#: What a claim that holds its job does, by (ending, whether the job has an extension).
HELD: dict[tuple[Ending, bool], Action] = {
    (Ending.SUCCEEDED, False): _COMPLETE,
    (Ending.FAILED, False): _RETRY,
    (Ending.FAILED_LAST, False): _BURY,
    (Ending.SNOOZED, False): _SNOOZE,
    (Ending.DISCARDED, False): _DISCARD,
    (Ending.NO_HANDLER, False): _BURY,
    (Ending.UNLOADABLE, False): _BURY,
    (Ending.DEAD_LETTER, False): _BURY,
    (Ending.RELEASED, False): _RELEASE,
    (Ending.RENEW, False): _RENEW,
    (Ending.CANCELLED, False): _CANCEL,
    (Ending.SUCCEEDED, True): _EXT_COMPLETE,
    (Ending.FAILED, True): _EXT_RETRY,
    (Ending.FAILED_LAST, True): _EXT_FAIL,
    (Ending.SNOOZED, True): _SNOOZE,
    (Ending.DISCARDED, True): _EXT_FAIL,
    (Ending.NO_HANDLER, True): _EXT_FAIL,
    (Ending.UNLOADABLE, True): _BURY,
    (Ending.DEAD_LETTER, True): _BURY,
    (Ending.RELEASED, True): _RELEASE,
    (Ending.RENEW, True): _RENEW,
    (Ending.CANCELLED, True): _EXT_CANCEL,
}


def _done(answers: dict[Outcome, Outcome]) -> dict[Outcome, Action]:
    """Rows of :data:`ALREADY`. Every row also answers a job this claim finished as
    cancelled (its cancel mark turned whatever it asked into a cancellation, so a retry
    of the same call, asking the same, answers as that commit did)."""
    rows = {earlier: Action(Act.DONE, answer) for earlier, answer in answers.items()}
    rows[Outcome.CANCELLED] = Action(Act.DONE, Outcome.CANCELLED)
    return rows


_EVERY_EARLIER = (Outcome.COMPLETED, Outcome.DISCARDED, Outcome.DEAD_LETTERED, Outcome.REQUEUED)
_PLAIN_FAIL = _done(
    {Outcome.REQUEUED: Outcome.REQUEUED, Outcome.DEAD_LETTERED: Outcome.DEAD_LETTERED}
)

#: What a claim this claim settled already answers, by (ending, extension?) and then by
#: the earlier settlement's outcome: an earlier try of the same call did it. Any other
#: earlier outcome means the claim settled the job some other way: :data:`LOST`.
ALREADY: dict[tuple[Ending, bool], dict[Outcome, Action]] = {
    (Ending.SUCCEEDED, False): _done({Outcome.COMPLETED: Outcome.COMPLETED}),
    (Ending.FAILED, False): _PLAIN_FAIL,
    (Ending.FAILED_LAST, False): _PLAIN_FAIL,
    (Ending.SNOOZED, False): _done({Outcome.REQUEUED: Outcome.SNOOZED}),
    (Ending.DISCARDED, False): _done({Outcome.DISCARDED: Outcome.DISCARDED}),
    (Ending.NO_HANDLER, False): _done({Outcome.DEAD_LETTERED: Outcome.DEAD_LETTERED}),
    (Ending.UNLOADABLE, False): _done({Outcome.DEAD_LETTERED: Outcome.DEAD_LETTERED}),
    (Ending.DEAD_LETTER, False): _done({Outcome.DEAD_LETTERED: Outcome.DEAD_LETTERED}),
    (Ending.RELEASED, False): _done({Outcome.REQUEUED: Outcome.RELEASED}),
    (Ending.RENEW, False): _done({earlier: earlier for earlier in _EVERY_EARLIER}),
    (Ending.SUCCEEDED, True): _done({Outcome.COMPLETED: Outcome.COMPLETED}),
    (Ending.FAILED, True): _done({Outcome.REQUEUED: Outcome.REQUEUED}),
    (Ending.FAILED_LAST, True): _done({Outcome.DISCARDED: Outcome.FAILED}),
    (Ending.SNOOZED, True): _done({Outcome.REQUEUED: Outcome.SNOOZED}),
    (Ending.DISCARDED, True): _done({Outcome.DISCARDED: Outcome.FAILED}),
    (Ending.NO_HANDLER, True): _done({Outcome.DISCARDED: Outcome.FAILED}),
    (Ending.UNLOADABLE, True): _done({Outcome.DEAD_LETTERED: Outcome.DEAD_LETTERED}),
    (Ending.DEAD_LETTER, True): _done({Outcome.DEAD_LETTERED: Outcome.DEAD_LETTERED}),
    (Ending.RELEASED, True): _done({Outcome.REQUEUED: Outcome.RELEASED}),
    (Ending.RENEW, True): _done({earlier: earlier for earlier in _EVERY_EARLIER}),
    (Ending.CANCELLED, False): _done({}),
    (Ending.CANCELLED, True): _done({}),
}

#: The answer for a claim that no longer holds its job.
LOST = Action(Act.LOST, Outcome.LEASE_LOST)

#: The outcome a job's tombstone records, by the state it finished in, when this claim
#: finished it (moved jobs were finished by an operator, not by a claim). A job that
#: ``quick.cancel`` finished itself leaves no token on its tombstone, so a cancelled one
#: carrying the claim's token is one this claim finished, under the cancel mark.
_FINISHED_AS = {
    JobState.COMPLETED.value: Outcome.COMPLETED,
    JobState.DISCARDED.value: Outcome.DISCARDED,
    JobState.DEAD.value: Outcome.DEAD_LETTERED,
    JobState.CANCELLED.value: Outcome.CANCELLED,
}


def earlier_outcome(tombstone_state: object) -> Outcome | None:
    """How a claim whose token a job's tombstone carries settled it (None: it did not)."""
    return _FINISHED_AS.get(tombstone_state) if isinstance(tombstone_state, str) else None


def is_last_attempt(attempt: int, limit: int) -> bool:
    """Whether failed ``attempt`` (1-based) used up the job's ``limit`` of attempts."""
    return attempt >= limit


def decide(
    status: Status,
    earlier: Outcome | None,
    ending: Ending,
    extended: bool = False,
    attempt: int = 0,
    limit: int = 0,
    cancelling: bool = False,
) -> Action:
    """The action for a claim standing at ``status`` whose attempt ended as ``ending``.

    Args:
        status: where the claim stands with its job.
        earlier: the claim's earlier settlement, when ``status`` is SETTLED.
        ending: how the attempt ended (or what the holder asks for).
        extended: the job has a (loaded) extension, which owns its last failure.
        attempt: the attempt that ended (1-based); with ``limit``, it tells whether a
            failure was the last attempt.
        limit: the job's attempt limit (:func:`quick.retrying.attempt_limit`).
        cancelling: the held job carries the cancel mark: any ending but a renewal
            (the holder keeps it until its handler stops) finishes it as cancelled.
    """
    if ending is Ending.FAILED and is_last_attempt(attempt, limit):
        ending = Ending.FAILED_LAST
    if cancelling and ending is not Ending.RENEW:
        ending = Ending.CANCELLED
    if status is Status.HELD:
        return HELD[ending, extended]
    if status is Status.SETTLED and earlier is not None:
        return ALREADY[ending, extended].get(earlier, LOST)
    return LOST
