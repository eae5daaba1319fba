"""The settlement table (quick.settlement), row by row, without a database."""

from __future__ import annotations

import itertools

import pytest

from quick.jobs import JobState
from quick.settlement import (
    ALREADY,
    HELD,
    LOST,
    Act,
    Ending,
    Hook,
    Outcome,
    Status,
    decide,
    earlier_outcome,
    is_last_attempt,
)

E, Oc, S = Ending, Outcome, JobState

#: (ending, extended) -> (act, outcome, state, refund, records_error, hook) for a held claim.
HELD_ROWS = [
    (E.SUCCEEDED, False, Act.FINISH, Oc.COMPLETED, S.COMPLETED, False, False, None),
    (E.FAILED, False, Act.PUT_BACK, Oc.REQUEUED, S.SCHEDULED, False, True, None),
    (E.FAILED_LAST, False, Act.BURY, Oc.DEAD_LETTERED, None, False, False, None),
    (E.SNOOZED, False, Act.PUT_BACK, Oc.SNOOZED, S.SCHEDULED, True, False, None),
    (E.DISCARDED, False, Act.FINISH, Oc.DISCARDED, S.DISCARDED, False, True, None),
    (E.NO_HANDLER, False, Act.BURY, Oc.DEAD_LETTERED, None, False, False, None),
    (E.UNLOADABLE, False, Act.BURY, Oc.DEAD_LETTERED, None, False, False, None),
    (E.DEAD_LETTER, False, Act.BURY, Oc.DEAD_LETTERED, None, False, False, None),
    (E.RELEASED, False, Act.PUT_BACK, Oc.RELEASED, S.READY, True, False, None),
    (E.RENEW, False, Act.RENEW, Oc.COMPLETED, None, False, False, None),
    (E.CANCELLED, False, Act.FINISH, Oc.CANCELLED, S.CANCELLED, False, False, None),
    (E.SUCCEEDED, True, Act.FINISH, Oc.COMPLETED, S.COMPLETED, False, False, Hook.SUCCEEDED),
    (E.FAILED, True, Act.PUT_BACK, Oc.REQUEUED, S.SCHEDULED, False, True, Hook.RETRYING),
    (E.FAILED_LAST, True, Act.FINISH, Oc.FAILED, S.DISCARDED, False, True, Hook.FAILED),
    (E.SNOOZED, True, Act.PUT_BACK, Oc.SNOOZED, S.SCHEDULED, True, False, None),
    (E.DISCARDED, True, Act.FINISH, Oc.FAILED, S.DISCARDED, False, True, Hook.FAILED),
    (E.NO_HANDLER, True, Act.FINISH, Oc.FAILED, S.DISCARDED, False, True, Hook.FAILED),
    (E.UNLOADABLE, True, Act.BURY, Oc.DEAD_LETTERED, None, False, False, None),
    (E.DEAD_LETTER, True, Act.BURY, Oc.DEAD_LETTERED, None, False, False, None),
    (E.RELEASED, True, Act.PUT_BACK, Oc.RELEASED, S.READY, True, False, None),
    (E.RENEW, True, Act.RENEW, Oc.COMPLETED, None, False, False, None),
    (E.CANCELLED, True, Act.FINISH, Oc.CANCELLED, S.CANCELLED, False, True, Hook.FAILED),
]

_ANY_EARLIER = {o: o for o in (Oc.COMPLETED, Oc.DISCARDED, Oc.DEAD_LETTERED, Oc.REQUEUED)}
_PLAIN_FAIL = {Oc.REQUEUED: Oc.REQUEUED, Oc.DEAD_LETTERED: Oc.DEAD_LETTERED}

#: (ending, extended) -> {earlier settlement: answer} for a claim that already settled.
ALREADY_ROWS = [
    (E.SUCCEEDED, False, {Oc.COMPLETED: Oc.COMPLETED}),
    (E.FAILED, False, _PLAIN_FAIL),
    (E.FAILED_LAST, False, _PLAIN_FAIL),
    (E.SNOOZED, False, {Oc.REQUEUED: Oc.SNOOZED}),
    (E.DISCARDED, False, {Oc.DISCARDED: Oc.DISCARDED}),
    (E.NO_HANDLER, False, {Oc.DEAD_LETTERED: Oc.DEAD_LETTERED}),
    (E.UNLOADABLE, False, {Oc.DEAD_LETTERED: Oc.DEAD_LETTERED}),
    (E.DEAD_LETTER, False, {Oc.DEAD_LETTERED: Oc.DEAD_LETTERED}),
    (E.RELEASED, False, {Oc.REQUEUED: Oc.RELEASED}),
    (E.RENEW, False, _ANY_EARLIER),
    (E.CANCELLED, False, {}),
    (E.SUCCEEDED, True, {Oc.COMPLETED: Oc.COMPLETED}),
    (E.FAILED, True, {Oc.REQUEUED: Oc.REQUEUED}),
    (E.FAILED_LAST, True, {Oc.DISCARDED: Oc.FAILED}),
    (E.SNOOZED, True, {Oc.REQUEUED: Oc.SNOOZED}),
    (E.DISCARDED, True, {Oc.DISCARDED: Oc.FAILED}),
    (E.NO_HANDLER, True, {Oc.DISCARDED: Oc.FAILED}),
    (E.UNLOADABLE, True, {Oc.DEAD_LETTERED: Oc.DEAD_LETTERED}),
    (E.DEAD_LETTER, True, {Oc.DEAD_LETTERED: Oc.DEAD_LETTERED}),
    (E.RELEASED, True, {Oc.REQUEUED: Oc.RELEASED}),
    (E.RENEW, True, _ANY_EARLIER),
    (E.CANCELLED, True, {}),
]

#: What a claim's earlier settlement can be, as fencing reads it.
EARLIER = [Oc.COMPLETED, Oc.DISCARDED, Oc.DEAD_LETTERED, Oc.REQUEUED, Oc.CANCELLED]


def test_settlement_table_has_a_row_for_every_ending_and_kind_of_job() -> None:
    every = set(itertools.product(Ending, (False, True)))
    assert set(HELD) == every
    assert set(ALREADY) == every
    assert {(row[0], row[1]) for row in HELD_ROWS} == every
    assert {(row[0], row[1]) for row in ALREADY_ROWS} == every


@pytest.mark.parametrize(
    ("ending", "extended", "act", "outcome", "state", "refund", "records_error", "hook"),
    HELD_ROWS,
)
def test_settlement_held_claim_row(
    ending: Ending,
    extended: bool,
    act: Act,
    outcome: Outcome,
    state: JobState | None,
    refund: bool,
    records_error: bool,
    hook: Hook | None,
) -> None:
    attempt, limit = (3, 3) if ending is Ending.FAILED_LAST else (1, 3)
    if ending is Ending.FAILED_LAST:
        ending = Ending.FAILED  # decide() tells the last failure apart
    action = decide(Status.HELD, None, ending, extended=extended, attempt=attempt, limit=limit)
    got = (action.act, action.outcome, action.state, action.refund, action.records_error)
    assert got == (act, outcome, state, refund, records_error)
    assert action.hook is hook


@pytest.mark.parametrize(("ending", "extended", "answers"), ALREADY_ROWS)
@pytest.mark.parametrize("earlier", EARLIER)
def test_settlement_settled_claim_row(
    ending: Ending, extended: bool, answers: dict[Outcome, Outcome], earlier: Outcome
) -> None:
    attempt, limit = (3, 3) if ending is Ending.FAILED_LAST else (1, 3)
    if ending is Ending.FAILED_LAST:
        ending = Ending.FAILED
    action = decide(
        Status.SETTLED, earlier, ending, extended=extended, attempt=attempt, limit=limit
    )
    if earlier is Oc.CANCELLED:  # this claim finished it cancelled: a retry answers so
        assert (action.act, action.outcome) == (Act.DONE, Oc.CANCELLED)
    elif earlier in answers:
        assert action.act is Act.DONE
        assert action.outcome is answers[earlier]
    else:
        assert action is LOST


@pytest.mark.parametrize(("ending", "extended"), list(itertools.product(Ending, (False, True))))
@pytest.mark.parametrize("earlier", [None, *EARLIER])
def test_settlement_lost_claim_is_lost_whatever_it_asks(
    ending: Ending, extended: bool, earlier: Outcome | None
) -> None:
    action = decide(Status.LOST, earlier, ending, extended=extended, attempt=9, limit=1)
    assert action is LOST
    assert action.act is Act.LOST
    assert action.outcome is Outcome.LEASE_LOST


def test_settlement_settled_without_an_earlier_outcome_is_lost() -> None:
    assert decide(Status.SETTLED, None, Ending.SUCCEEDED) is LOST


@pytest.mark.parametrize(
    ("attempt", "limit", "last"),
    [(1, 1, True), (1, 5, False), (4, 5, False), (5, 5, True), (7, 5, True)],
)
def test_settlement_last_attempt_is_the_limit_reached(attempt: int, limit: int, last: bool) -> None:
    assert is_last_attempt(attempt, limit) is last
    action = decide(Status.HELD, None, Ending.FAILED, attempt=attempt, limit=limit)
    assert action.act is (Act.BURY if last else Act.PUT_BACK)
    extended = decide(Status.HELD, None, Ending.FAILED, extended=True, attempt=attempt, limit=limit)
    assert extended.hook is (Hook.FAILED if last else Hook.RETRYING)


def test_settlement_only_a_failure_looks_at_the_attempt_limit() -> None:
    for ending in Ending:
        if ending in (Ending.FAILED, Ending.FAILED_LAST):
            continue
        spent = decide(Status.HELD, None, ending, attempt=9, limit=1)
        fresh = decide(Status.HELD, None, ending, attempt=1, limit=9)
        assert spent is fresh


@pytest.mark.parametrize(
    ("stored", "outcome"),
    [
        ("completed", Outcome.COMPLETED),
        ("discarded", Outcome.DISCARDED),
        ("dead", Outcome.DEAD_LETTERED),
        ("cancelled", Outcome.CANCELLED),  # cancelled while this claim held it
        ("moved", None),
        ("nonsense", None),
        (7, None),
    ],
)
def test_settlement_reads_a_tombstone_state_as_the_earlier_outcome(
    stored: object, outcome: Outcome | None
) -> None:
    assert earlier_outcome(stored) is outcome


@pytest.mark.parametrize(("ending", "extended"), list(itertools.product(Ending, (False, True))))
def test_settlement_cancel_mark_finishes_a_held_job_as_cancelled_whatever_it_asks(
    ending: Ending, extended: bool
) -> None:
    action = decide(
        Status.HELD, None, ending, extended=extended, attempt=1, limit=3, cancelling=True
    )
    if ending is Ending.RENEW:  # the holder keeps the job until its handler stops
        assert action.act is Act.RENEW
    else:
        assert (action.act, action.outcome, action.state) == (
            Act.FINISH,
            Oc.CANCELLED,
            S.CANCELLED,
        )
    assert decide(Status.LOST, None, ending, extended=extended, cancelling=True) is LOST
