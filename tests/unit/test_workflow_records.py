"""Workflow records (runs, steps, journal events, step items): each round-trips through its
stored form, writes only legend names, and refuses a value of the wrong shape with
CorruptValue naming the record, as job records do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quick
from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.layout import RECORDS, WF_RUNS, WF_STEPS
from keyspace.protocol import Database
from workflow import CorruptRun, RunStatus, StepStatus, Workflow, inspect_run, start_run
from workflow.definition import StepKind, StepSpec
from workflow.items import StepItem, hook_item, is_hook
from workflow.journal import Event
from workflow.records import RunRecord, StepRecord, read_run, read_step

DEFINITION = [StepSpec(key="a", kind=StepKind.TASK, topic="t").to_record()]


def full_run(**changes: Any) -> RunRecord:
    """A run record with every field set."""
    run = RunRecord(
        id="r1",
        workflow="wf",
        status=RunStatus.FAILED,
        queue="q",
        input={"n": [1, 2]},
        definition=DEFINITION,
        created_ms=5,
        finished_ms=9,
        idempotency_key="key",
        hooks=("run_finished",),
        reason="step 'a' failed: boom",
        retry_id="retry-1",
        trace={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01", "tracestate": "k=v"},
        parent=("r0", "child"),
    )
    return run.evolve(**changes)


def full_step(**changes: Any) -> StepRecord:
    """A step record with every field set."""
    step = StepRecord(
        run_id="r1",
        key="a",
        status=StepStatus.SUCCEEDED,
        attempts=3,
        counted=2,
        max_attempts=4,
        job_id="j1",
        due_ms=7,
        started_ms=6,
        finished_ms=8,
        output={"out": True},
        error="boom",
        reason="why not",
        signalled=True,
        signal=[1, "x"],
        signal_id="sig-1",
        awaiting=True,
        pruned=True,
        child_run="r2",
        count=3,
        done=2,
        out_bytes=40,
    )
    return step.evolve(**changes)


def _stored(value: bytes) -> dict[str, Any]:
    record = unpack_value(value)
    assert isinstance(record, dict)
    return record


def _with(value: bytes, **fields: Any) -> bytes:
    """``value`` with ``fields`` replaced (a field given as ``...`` removed)."""
    record = _stored(value)
    for name, field_value in fields.items():
        if field_value is ...:
            del record[name]
        else:
            record[name] = field_value
    return pack_value(record)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        full_run(),
        full_run(finished_ms=None, idempotency_key=None, hooks=(), reason=None, parent=None),
    ],
    ids=["full", "minimal"],
)
def test_run_record_round_trips(run: RunRecord) -> None:
    assert RunRecord.from_value(run.id, run.to_value()) == run


@pytest.mark.parametrize(
    "step",
    [
        full_step(),
        StepRecord.waiting("r1", "a"),
        full_step(signal=None, output=None),
        full_step(signalled=False, signal=None, signal_id=None, awaiting=False),
    ],
    ids=["full", "waiting", "signalled-with-none", "unsignalled"],
)
def test_step_record_round_trips(step: StepRecord) -> None:
    assert StepRecord.from_value(step.run_id, step.key, step.to_value()) == step


def test_workflow_records_write_their_legend_fields_in_legend_order() -> None:
    assert tuple(_stored(full_run().to_value())) == RECORDS["run"]
    assert tuple(_stored(full_step().to_value())) == RECORDS["step"]
    event = Event(kind="step_claimed", at_ms=1, step="a", details={"attempt": 1})
    assert tuple(_stored(event.to_value())) == RECORDS["journal"]
    item = StepItem(run_id="r1", step="a", workflow="wf", results={}, index=0, input=None)
    assert tuple(item.to_record()) == RECORDS["step job x"]
    assert tuple(hook_item()) == RECORDS["hook job x"]


def test_step_record_leaves_out_fields_at_their_default() -> None:
    assert _stored(StepRecord.waiting("r1", "a").to_value()) == {"ss": "waiting", "a": 0}


def test_step_record_keeps_a_none_signal_apart_from_no_signal() -> None:
    signalled = full_step(signal=None)
    assert "g" in _stored(signalled.to_value())
    decoded = StepRecord.from_value("r1", "a", signalled.to_value())
    assert decoded.signalled
    assert decoded.signal is None
    assert not StepRecord.from_value("r1", "a", full_step(signalled=False).to_value()).signalled


def test_run_record_decodes_its_definition() -> None:
    definition = full_run().decode_definition()
    assert list(definition.steps) == ["a"]
    assert definition.name == "wf"


def test_journal_event_round_trips() -> None:
    event = Event(kind="step_failed", at_ms=3, step="a", details={"error": "x"}, position=b"k")
    assert Event.from_value(b"k", event.to_value()) == event
    run_event = Event(kind="run_started", at_ms=3, details={}, position=b"k")
    assert Event.from_value(b"k", run_event.to_value()) == run_event


@pytest.mark.parametrize(
    "item",
    [
        StepItem(run_id="r1", step="a", workflow="wf", results={"b": 1}, timeout=2.5),
        StepItem(run_id="r1", step="a", workflow="wf", results={}, timeout=None),
        StepItem(run_id="r1", step="nap", workflow="wf"),
    ],
    ids=["task", "task-without-timeout", "sleep"],
)
def test_step_item_round_trips(item: StepItem) -> None:
    assert StepItem.from_record(item.to_record()) == item
    assert not is_hook(item.to_record())


def test_hook_item_is_recognised() -> None:
    assert is_hook(hook_item())
    assert not is_hook(None)
    assert not is_hook({})


# -- wrong shapes -----------------------------------------------------------------------------

NOT_A_MAP = [pack_value([1, 2]), pack_value("text"), pack_value(None)]
UNDECODABLE = [b"", b"\x09junk", b"\x01\xc1"]


@pytest.mark.parametrize("data", NOT_A_MAP + UNDECODABLE)
def test_run_record_that_is_no_map_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptValue, match="r1" if data in NOT_A_MAP else "."):
        RunRecord.from_value("r1", data)


@pytest.mark.parametrize("data", NOT_A_MAP + UNDECODABLE)
def test_step_record_that_is_no_map_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptValue, match="'a' of run 'r1'" if data in NOT_A_MAP else "."):
        StepRecord.from_value("r1", "a", data)


@pytest.mark.parametrize(
    "fields",
    [
        {"w": ...},
        {"rs": ...},
        {"q": ...},
        {"i": ...},
        {"df": ...},
        {"c": ...},
        {"w": 3},
        {"rs": "sleeping"},
        {"rs": 1},
        {"q": None},
        {"df": {"a": 1}},
        {"c": "now"},
        {"c": True},
        {"c": 1.5},
        {"f": "later"},
        {"ik": 7},
        {"h": "run_finished"},
        {"h": [1]},
        {"why": 3},
        {"rt": b"id"},
        {"tc": "00-abc"},
        {"tc": {"traceparent": "00-abc"}},
        {"tc": {"traceparent": f"00-{'a' * 32}-{'b' * 16}-01", "tracestate": "\n"}},
    ],
    ids=repr,
)
def test_run_record_of_the_wrong_shape_is_corrupt_and_named(fields: dict[str, Any]) -> None:
    with pytest.raises(CorruptValue, match="run record 'r1'"):
        RunRecord.from_value("r1", _with(full_run().to_value(), **fields))


def test_run_record_whose_definition_does_not_decode_is_corrupt_and_named() -> None:
    for definition in ([{"sk": "a"}], [3], [{"sk": "a", "kd": "dance"}]):
        run = RunRecord.from_value("r1", _with(full_run().to_value(), df=definition))
        with pytest.raises(CorruptValue, match="run record 'r1'"):
            run.decode_definition()


@pytest.mark.parametrize(
    "fields",
    [
        {"ss": ...},
        {"ss": "asleep"},
        {"ss": 2},
        {"a": "one"},
        {"a": False},
        {"ra": None},
        {"m": "4"},
        {"j": 1},
        {"n": 1.0},
        {"st": "x"},
        {"f": [1]},
        {"e": 5},
        {"why": {}},
        {"gi": 9},
        {"aw": 1},
    ],
    ids=repr,
)
def test_step_record_of_the_wrong_shape_is_corrupt_and_named(fields: dict[str, Any]) -> None:
    with pytest.raises(CorruptValue, match="step record 'a' of run 'r1'"):
        StepRecord.from_value("r1", "a", _with(full_step().to_value(), **fields))


@pytest.mark.parametrize(
    "record",
    [
        [1],
        {"at": 1, "sk": None, "det": {}},
        {"ev": "run_started", "sk": None, "det": {}},
        {"ev": "run_started", "at": 1, "det": {}},
        {"ev": "run_started", "at": 1, "sk": None},
        {"ev": 3, "at": 1, "sk": None, "det": {}},
        {"ev": "run_started", "at": "now", "sk": None, "det": {}},
        {"ev": "run_started", "at": 1, "sk": 4, "det": {}},
        {"ev": "run_started", "at": 1, "sk": None, "det": 5},
    ],
    ids=repr,
)
def test_journal_event_of_the_wrong_shape_is_corrupt_and_named(record: Any) -> None:
    with pytest.raises(CorruptValue, match="journal event b'key'"):
        Event.from_value(b"key", pack_value(record))


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"mod": "workflow", "sk": "a", "w": "wf"},
        {"mod": "workflow", "ri": "r1", "w": "wf"},
        {"mod": "workflow", "ri": "r1", "sk": "a"},
        {"mod": "workflow", "ri": 1, "sk": "a", "w": "wf"},
        {"mod": "workflow", "ri": "r1", "sk": "a", "w": "wf", "dep": 3},
        {"mod": "workflow", "ri": "r1", "sk": "a", "w": "wf", "dep": {}, "to": "soon"},
    ],
    ids=repr,
)
def test_step_item_of_the_wrong_shape_is_corrupt(data: Any) -> None:
    with pytest.raises(CorruptValue, match="step item"):
        StepItem.from_record(data)


# -- through the store ------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with quick.open(f"sqlite:///{tmp_path / 'wf.db'}") as opened:
        yield opened


def test_workflow_reads_of_rotten_records_raise_corrupt_run_naming_their_key(
    db: Database,
) -> None:
    run_id = start_run(db, Workflow("wf").step("a", topic="t"), None, queue_id="q")
    step_key = WF_STEPS.pack((run_id, "a"))
    db.transact(lambda tr: tr.set(step_key, pack_value({"ss": 1})))
    with pytest.raises(CorruptRun, match=f"step record 'a' of run '{run_id}'") as caught:
        db.transact(lambda tr: read_step(tr, run_id, "a"))
    assert caught.value.key == step_key
    run_key = WF_RUNS.pack((run_id,))
    db.transact(lambda tr: tr.set(run_key, pack_value({"w": "wf"})))
    for read in (
        lambda: db.transact(lambda tr: read_run(tr, run_id)),
        lambda: inspect_run(db, run_id),
    ):
        with pytest.raises(CorruptRun, match=f"run record '{run_id}'") as caught:
            read()
        assert caught.value.key == run_key
