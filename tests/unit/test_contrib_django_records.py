"""The stored shapes of Django tasks (quick/contrib/django/records.py): pure, no Django."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyspace.codec import pack_value, unpack_value
from quick.contrib.django import records
from quick.errors import InvalidPayload


def normalize_json(value: Any) -> Any:
    """Django's normaliser, as far as these tests need: tuples become lists."""
    if isinstance(value, tuple | list):
        return [normalize_json(v) for v in value]
    if isinstance(value, dict):
        return {k: normalize_json(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"Unsupported type: {type(value)}")


def test_records_priority_maps_django_range_onto_quick_order() -> None:
    assert records.quick_priority(0) == 100  # Django's default is quick's
    assert records.quick_priority(100) == 0  # most urgent first
    assert records.quick_priority(-100) == 200
    assert records.quick_priority(10) < records.quick_priority(-10)


def test_records_topic_round_trips_and_foreign_topics_name_no_task() -> None:
    topic = records.topic_of("shop.tasks.fulfil")
    assert records.module_path_of(topic) == "shop.tasks.fulfil"
    assert records.module_path_of("email:send") is None


def test_records_arguments_round_trip_as_json_values() -> None:
    call = records.encode_arguments(normalize_json, (1, (2, 3)), {"b": {"c": None}}, "default", 7)
    assert records.decode_arguments(call.to_payload()) == call
    assert call.args == [1, [2, 3]]
    assert records.json_value(normalize_json, "x", {1: (2,)}) == {"1": [2]}  # as JSON


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((object(),), {}, "args[0]"),
        ((1, {2}), {}, "args[1]"),
        ((), {"when": float("nan")}, "kwargs['when']"),
        ((2**64,), {}, "args[0]"),
    ],
)
def test_records_arguments_that_are_not_json_are_refused_by_name(
    args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPayload) as raised:
        records.encode_arguments(normalize_json, args, kwargs, "default", 7)
    assert raised.value.field == field


@pytest.mark.parametrize(
    "payload",
    [None, [], {"a": [], "k": {}}, {"a": {}, "k": {}, "b": "d", "e": 1}, {"a": [], "k": {1: 2}}],
)
def test_records_payloads_of_the_wrong_shape_are_refused(payload: Any) -> None:
    with pytest.raises(ValueError, match=r"payload|keyword"):
        records.decode_arguments(payload)


def test_records_output_round_trips_and_a_wrong_one_is_refused() -> None:
    call = records.encode_arguments(normalize_json, (1,), {}, "default", 7)
    stored = records.encode_output({"ok": 1}, "w-1", 2, 10, 12, "shop.tasks.f", call)
    output = records.decode_output(stored)
    assert (output.value, output.worker, output.attempt) == ({"ok": 1}, "w-1", 2)
    assert (output.started_ms, output.finished_ms, output.module_path) == (10, 12, "shop.tasks.f")
    assert output.arguments == call
    with pytest.raises(ValueError, match="attempt"):
        records.decode_output({**stored, "n": 0})


def test_records_failure_text_round_trips_through_quick_error_text() -> None:
    error = records.TaskFailed("shop.errors.Boom", "Traceback...\nBoom: x\n", "w-1", 5)
    text = f"{type(error).__name__}: {error}"  # how quick records it
    failure = records.parse_failure(text)
    assert failure == records.Failure(
        exception_class_path="shop.errors.Boom",
        traceback="Traceback...\nBoom: x\n",
        worker="w-1",
        started_ms=5,
    )


def test_records_long_traceback_keeps_its_end() -> None:
    tail = "RuntimeError: the end\n"
    error = records.TaskFailed("builtins.RuntimeError", "x" * 10_000 + tail, "w", 1)
    failure = records.parse_failure(f"TaskFailed: {error}")
    assert failure.traceback.endswith(tail)
    assert len(failure.traceback.encode()) <= records.TRACEBACK_BYTES + 3


@pytest.mark.parametrize(
    "text",
    [
        "unknown topic 'django:os.system': no handler is registered",
        "TaskFailed: not json\nTraceback",
        "TaskFailed: " + json.dumps({"c": 1, "w": "w", "s": 1}) + "\n",
    ],
)
def test_records_failure_quick_recorded_is_reported_whole(text: str) -> None:
    failure = records.parse_failure(text)
    assert failure.exception_class_path == records.QUICK_FAILURE
    assert failure.traceback == text


ANYTHING = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary(max_size=8)
    | st.builds(object)
    | st.sets(st.integers(), max_size=2),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(ANYTHING, max_size=3), kwargs=st.dictionaries(st.text(), ANYTHING))
def test_records_any_arguments_encode_as_json_or_are_refused_by_name(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    """With Django's own normaliser: whatever a caller passes either becomes JSON values
    that msgpack stores and that decode back, or raises InvalidPayload naming an argument."""
    normalize = pytest.importorskip("django_tasks.utils").normalize_json
    try:
        call = records.encode_arguments(normalize, args, kwargs, "default", 1)
    except InvalidPayload as error:
        refused = error.field
    else:
        refused = None
    if refused is not None:
        assert refused.startswith(("args[", "kwargs["))
        return
    json.dumps(call.to_payload(), allow_nan=False)
    assert records.decode_arguments(unpack_value(pack_value(call.to_payload()))) == call
