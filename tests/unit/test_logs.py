"""Log formatters: a job line's structured fields as key=value text and as one JSON object."""

from __future__ import annotations

import json
import logging
import sys

from consumer.logs import JsonFormatter, KeyValueFormatter, configure

JOB = {
    "queue": "tenant 42",
    "topic": "email:send",
    "job_id": "01abc",
    "attempt": 2,
    "outcome": "requeued",
    "duration": 0.012345678,
    "error": 'ValueError: bad "to"',
}


def _record(extra: dict[str, object], exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise KeyError("boom")
        except KeyError:
            info = sys.exc_info()
    record = logging.LogRecord("quick.consumer", logging.INFO, __file__, 1, "job %s", ("x",), info)
    record.__dict__.update(extra)
    return record


def test_logs_json_formatter_puts_every_field_in_one_object() -> None:
    line = JsonFormatter().format(_record({**JOB, "error": None}))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "INFO",
        "logger": "quick.consumer",
        "message": "job x",
        "queue": "tenant 42",
        "topic": "email:send",
        "job_id": "01abc",
        "attempt": 2,
        "outcome": "requeued",
        "duration": 0.012346,
    }


def test_logs_json_formatter_keeps_the_exception_on_the_same_line() -> None:
    line = JsonFormatter().format(_record(JOB, exc=True))
    entry = json.loads(line)
    assert entry["error"] == 'ValueError: bad "to"'
    assert "KeyError: 'boom'" in entry["exception"]
    assert len(line.splitlines()) == 1


def test_logs_key_value_formatter_quotes_values_with_spaces_or_quotes() -> None:
    line = KeyValueFormatter().format(_record(JOB))
    assert line.endswith(
        ' INFO quick.consumer job x queue="tenant 42" topic=email:send job_id=01abc '
        'attempt=2 outcome=requeued duration=0.0123457 error="ValueError: bad \\"to\\""'
    )


def test_logs_key_value_formatter_leaves_out_none_and_plain_records_alone() -> None:
    assert "error=" not in KeyValueFormatter().format(_record({**JOB, "error": None}))
    assert KeyValueFormatter().format(_record({})).endswith(" INFO quick.consumer job x")


def test_logs_configure_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        handler = configure("json", "WARNING")
        assert root.handlers == [handler]
        assert isinstance(handler.formatter, JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
