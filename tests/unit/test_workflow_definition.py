"""Workflow definitions: validation errors with structured fields, and the journal fold.

Definition mistakes are refused before anything is stored: the local ones (blank or
duplicate keys, out-of-range options) when a step is added, the graph ones (unknown
dependencies, cycles, topics without a handler) when ``start_run`` validates. The fold
that turns a run's journal into step states is pure and tested here without a db.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quick
from keyspace.layout import ROOT
from keyspace.protocol import Database
from workflow import (
    BlankStepKey,
    CycleError,
    DefinitionError,
    DuplicateStep,
    InvalidStepOption,
    UnknownDependency,
    UnknownTopic,
    Workflow,
    WorkflowError,
    start_run,
)
from workflow import journal as events
from workflow.journal import Event, fold

DEFINITION_ERRORS = [
    BlankStepKey,
    CycleError,
    DuplicateStep,
    InvalidStepOption,
    UnknownDependency,
    UnknownTopic,
]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with quick.open(f"sqlite:///{tmp_path / 'wf.db'}") as opened:
        yield opened


def _everything(db: Database) -> list[tuple[bytes, bytes]]:
    """Every key quick stores, to show that a refused start wrote nothing."""
    return list(db.transact(lambda tr: tr.get_range(*ROOT.range())))


def test_definition_errors_are_distinct_subclasses_of_the_family() -> None:
    assert len(set(DEFINITION_ERRORS)) == len(DEFINITION_ERRORS)
    for error in DEFINITION_ERRORS:
        assert issubclass(error, DefinitionError)
        assert issubclass(error, WorkflowError)
        assert issubclass(error, quick.QuickError)
        others = [other for other in DEFINITION_ERRORS if other is not error]
        assert not any(issubclass(error, other) for other in others)


def test_definition_cycle_names_the_steps_in_it_and_no_others() -> None:
    wf = (
        Workflow("cyclic")
        .step("root", topic="t")
        .step("a", topic="t", after=["root", "c"])
        .step("b", topic="t", after=["a"])
        .step("c", topic="t", after=["b"])
        .step("tail", topic="t", after=["c"])
    )
    with pytest.raises(CycleError) as caught:
        wf.validate()
    steps = caught.value.steps
    assert sorted(steps) == ["a", "b", "c"]
    assert caught.value.workflow == "cyclic"
    # In dependency order: each step runs after the one before it, round the loop.
    after = {spec.key: spec.after for spec in wf.steps}
    for i, key in enumerate(steps):
        assert steps[i - 1] in after[key]
    assert " -> ".join([*steps, steps[0]]) in str(caught.value)


def test_definition_self_dependency_is_a_cycle_of_one() -> None:
    with pytest.raises(CycleError) as caught:
        Workflow("selfish").step("a", topic="t", after="a").validate()
    assert caught.value.steps == ["a"]


def test_definition_unknown_dependency_names_step_and_dependency() -> None:
    wf = Workflow("w").step("a", topic="t").step("b", topic="t", after=["a", "ghost"])
    with pytest.raises(UnknownDependency) as caught:
        wf.validate()
    assert (caught.value.workflow, caught.value.step, caught.value.dependency) == (
        "w",
        "b",
        "ghost",
    )


def test_definition_forward_references_are_allowed() -> None:
    definition = Workflow("w").step("b", topic="t", after="a").step("a", topic="t").validate()
    assert definition.roots == ["a"]
    assert definition.sinks == ["b"]
    assert definition.successors == {"a": ("b",), "b": ()}


def test_definition_duplicate_step_is_refused_when_added() -> None:
    wf = Workflow("w").step("a", topic="t")
    with pytest.raises(DuplicateStep) as caught:
        wf.external("a")
    assert (caught.value.workflow, caught.value.step) == ("w", "a")
    assert [spec.key for spec in wf.steps] == ["a"]


@pytest.mark.parametrize("key", ["", "   ", None, 3])
def test_definition_blank_step_key_is_refused(key: Any) -> None:
    with pytest.raises(BlankStepKey) as caught:
        Workflow("w").step(key, topic="t")
    assert caught.value.key == key


def test_definition_blank_dependency_key_is_refused() -> None:
    with pytest.raises(BlankStepKey) as caught:
        Workflow("w").step("a", topic="t", after=["  "])
    assert caught.value.key == "  "


@pytest.mark.parametrize(
    ("add", "option", "value"),
    [
        (lambda wf: wf.step("s", topic="t", timeout=0), "timeout", 0),
        (lambda wf: wf.step("s", topic="t", timeout=-1.5), "timeout", -1.5),
        (lambda wf: wf.step("s", topic="t", max_attempts=0), "max_attempts", 0),
        (lambda wf: wf.step("s", topic="t", max_attempts=-2), "max_attempts", -2),
        (lambda wf: wf.step("s", topic="t", max_attempts=True), "max_attempts", True),
        (lambda wf: wf.step("s", topic="t", max_attempts=1.5), "max_attempts", 1.5),
        (lambda wf: wf.sleep("s", seconds=0), "seconds", 0),
        (lambda wf: wf.sleep("s", seconds=-1), "seconds", -1),
        (lambda wf: wf.sleep("s", seconds=float("nan")), "seconds", None),
        (lambda wf: wf.step("s", topic=""), "topic", ""),
    ],
)
def test_definition_invalid_step_option_names_option_and_value(
    add: Any, option: str, value: Any
) -> None:
    wf = Workflow("w")
    with pytest.raises(InvalidStepOption) as caught:
        add(wf)
    error = caught.value
    assert (error.workflow, error.step, error.option) == ("w", "s", option)
    if value is not None:  # nan != nan
        assert error.value == value
    assert wf.steps == []


def test_definition_positive_options_are_accepted() -> None:
    wf = (
        Workflow("w")
        .step("a", topic="t", timeout=0.5, max_attempts=1)
        .sleep("z", seconds=0.001, after="a")
    )
    assert [(s.key, s.timeout, s.max_attempts, s.seconds) for s in wf.steps] == [
        ("a", 0.5, 1, None),
        ("z", None, None, 0.001),
    ]


def test_definition_unknown_topic_is_checked_against_the_app() -> None:
    app = quick.App()

    @app.job("known")
    def known(payload: Any, meta: quick.Meta) -> None:
        return None

    wf = (
        Workflow("w")
        .step("a", topic="known")
        .external("e", after="a")
        .sleep("z", seconds=1, after="e")
        .step("b", topic="missing", after="z")
    )
    wf.validate()  # without an app, topics are not checked
    with pytest.raises(UnknownTopic) as caught:
        wf.validate(app)
    assert (caught.value.step, caught.value.topic) == ("b", "missing")


def test_definition_empty_workflow_and_blank_name_are_refused() -> None:
    with pytest.raises(DefinitionError):
        Workflow("empty").validate()
    with pytest.raises(DefinitionError):
        Workflow("  ")


def test_definition_round_trips_through_its_record() -> None:
    wf = (
        Workflow("w")
        .step("a", topic="t", max_attempts=3, timeout=2.0, priority=7)
        .external("e", after="a")
        .sleep("z", seconds=1.5, after=["a", "e"])
    )
    definition = wf.validate()
    again = type(definition).from_record("w", definition.to_record())
    assert again == definition


@pytest.mark.parametrize(
    "wf",
    [
        Workflow("bad").step("a", topic="t", after="b").step("b", topic="t", after="a"),
        Workflow("bad").step("a", topic="t", after="ghost"),
        Workflow("bad").step("a", topic="missing"),
        Workflow("bad"),
    ],
    ids=["cycle", "unknown-dependency", "unknown-topic", "empty"],
)
def test_start_run_refusing_a_definition_writes_nothing(db: Database, wf: Workflow) -> None:
    app = quick.App()
    start_run(db, Workflow("good").step("a", topic="t"), 1, queue_id="q")  # something stored
    before = _everything(db)
    with pytest.raises(DefinitionError):
        start_run(db, wf, {"x": 1}, queue_id="q", idempotency_key="k", app=app)
    assert _everything(db) == before


@pytest.mark.parametrize(
    ("queue_id", "key", "payload"),
    [("", None, 1), ("q", "", 1), ("q", None, object())],
    ids=["blank-queue", "blank-idempotency-key", "unencodable-input"],
)
def test_start_run_refusing_its_arguments_writes_nothing(
    db: Database, queue_id: str, key: str | None, payload: Any
) -> None:
    before = _everything(db)
    with pytest.raises(quick.QuickError):
        start_run(
            db, Workflow("w").step("a", topic="t"), payload, queue_id=queue_id, idempotency_key=key
        )
    assert _everything(db) == before


@pytest.mark.parametrize("priority", [2**63, -(2**63) - 1, "high", True])
def test_workflow_step_refuses_a_priority_the_queue_cannot_store(priority: Any) -> None:
    """Checked while building, so a start can never fail half-way on it."""
    with pytest.raises(InvalidStepOption) as refused:
        Workflow("w").step("a", topic="t", priority=priority)
    assert refused.value.option == "priority"


# -- the journal fold (pure) ----------------------------------------------------------------


def _event(kind: str, at: int, step: str | None = None, **details: Any) -> Event:
    return Event(kind=kind, at_ms=at, step=step, details=details)


def test_fold_of_no_events_is_a_running_run_of_waiting_steps() -> None:
    facts = fold(["a", "b"], [])
    assert facts.status == "running"
    assert {key: (s.status, s.attempts) for key, s in facts.steps.items()} == {
        "a": ("waiting", 0),
        "b": ("waiting", 0),
    }


def test_fold_counts_attempts_and_keeps_first_start_and_last_output() -> None:
    facts = fold(
        ["a"],
        [
            _event(events.RUN_STARTED, 10),
            _event(events.STEP_SCHEDULED, 10, "a", due_ms=10),
            _event(events.STEP_CLAIMED, 11, "a", attempt=1),
            _event(events.STEP_RETRYING, 12, "a", error="E: 1", retry_at_ms=50),
            _event(events.STEP_CLAIMED, 50, "a", attempt=2),
            _event(events.STEP_SUCCEEDED, 51, "a", output={"n": 2}),
            _event(events.RUN_SUCCEEDED, 51),
        ],
    )
    a = facts.steps["a"]
    assert (a.status, a.attempts, a.started_ms, a.finished_ms) == ("succeeded", 2, 11, 51)
    assert (a.output, a.error) == ({"n": 2}, None)
    assert (facts.status, facts.started_ms, facts.finished_ms) == ("succeeded", 10, 51)


def test_fold_retrying_step_is_scheduled_with_its_error_and_due_time() -> None:
    facts = fold(
        ["a"],
        [
            _event(events.STEP_SCHEDULED, 1, "a", due_ms=1),
            _event(events.STEP_CLAIMED, 2, "a"),
            _event(events.STEP_RETRYING, 3, "a", error="E: x", retry_at_ms=900),
        ],
    )
    a = facts.steps["a"]
    assert (a.status, a.error, a.due_ms, a.finished_ms) == ("scheduled", "E: x", 900, None)


def test_fold_failure_skips_and_cancel_record_reasons() -> None:
    facts = fold(
        ["a", "b", "c"],
        [
            _event(events.STEP_CLAIMED, 2, "a"),
            _event(events.STEP_FAILED, 3, "a", error="E: x"),
            _event(events.STEP_SKIPPED, 3, "b", reason="depends on step 'a', which failed"),
            _event(events.RUN_FAILED, 3, "a", error="E: x"),
            _event(events.STEP_CANCELLED, 4, "c", reason="the run was cancelled"),
        ],
    )
    assert (facts.steps["a"].status, facts.steps["a"].error) == ("failed", "E: x")
    assert facts.steps["b"].reason == "depends on step 'a', which failed"
    assert (facts.steps["c"].status, facts.steps["c"].finished_ms) == ("cancelled", 4)
    assert (facts.status, facts.finished_ms) == ("failed", 3)


def test_fold_signal_marks_the_step_without_finishing_it() -> None:
    facts = fold(
        ["e"],
        [_event(events.SIGNAL_RECEIVED, 5, "e", payload=1)],
    )
    assert (facts.steps["e"].status, facts.steps["e"].signalled) == ("waiting", True)
    facts = fold(
        ["e"],
        [
            _event(events.SIGNAL_RECEIVED, 5, "e", payload=1),
            _event(events.STEP_SUCCEEDED, 6, "e", output=1),
        ],
    )
    assert (facts.steps["e"].status, facts.steps["e"].output) == ("succeeded", 1)


def test_fold_pause_holds_steps_and_resume_runs_again() -> None:
    facts = fold(
        ["a"],
        [
            _event(events.STEP_SCHEDULED, 1, "a"),
            _event(events.RUN_PAUSED, 2),
            _event(events.STEP_HELD, 2, "a"),
        ],
    )
    assert (facts.status, facts.steps["a"].status) == ("paused", "waiting")
    resumed = fold(
        ["a"],
        [
            _event(events.STEP_SCHEDULED, 1, "a"),
            _event(events.RUN_PAUSED, 2),
            _event(events.STEP_HELD, 2, "a"),
            _event(events.RUN_RESUMED, 3),
            _event(events.STEP_SCHEDULED, 3, "a", due_ms=3),
        ],
    )
    assert (resumed.status, resumed.steps["a"].status) == ("running", "scheduled")


def test_fold_retry_resets_the_named_steps_but_keeps_their_attempts() -> None:
    facts = fold(
        ["a", "b"],
        [
            _event(events.STEP_CLAIMED, 1, "a"),
            _event(events.STEP_SUCCEEDED, 2, "a", output="A"),
            _event(events.STEP_CLAIMED, 3, "b"),
            _event(events.STEP_FAILED, 4, "b", error="E: b"),
            _event(events.RUN_FAILED, 4, "b", error="E: b"),
            _event(events.RUN_RETRIED, 9, steps=["b"]),
        ],
    )
    assert (facts.status, facts.finished_ms) == ("running", None)
    a, b = facts.steps["a"], facts.steps["b"]
    assert (a.status, a.output) == ("succeeded", "A")
    assert (b.status, b.attempts, b.error, b.finished_ms) == ("waiting", 1, None, None)


def test_fold_ignores_events_of_steps_not_in_the_definition() -> None:
    facts = fold(["a"], [_event(events.STEP_SUCCEEDED, 1, "ghost", output=1)])
    assert set(facts.steps) == {"a"}
    assert facts.steps["a"].status == "waiting"
