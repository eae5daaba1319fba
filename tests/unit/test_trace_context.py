"""The trace context a job carries (``quick.tracecontext``): recorded only when valid,
omitted when absent, and checked when read back (a bad one quarantines the record)."""

from __future__ import annotations

from typing import Any

import pytest

from keyspace.codec import CorruptValue, pack_value, unpack_value
from quick.jobs import Job, JobState
from quick.tracecontext import MAX_TRACESTATE, check_trace

PARENT = f"00-{'4bf92f3577b34da6a3ce929d0e0e4736'}-{'00f067aa0ba902b7'}-01"


def job(**changes: Any) -> Job:
    return Job(
        id="j", queue="q", topic="t", payload={}, priority=1, vis_ms=0, state=JobState.READY
    ).evolve(**changes)


def test_trace_context_round_trips_on_the_job_record() -> None:
    traced = job(trace={"traceparent": PARENT, "tracestate": "vendor=1"})
    back = Job.from_value("q", "j", traced.to_value())
    assert back.trace == {"traceparent": PARENT, "tracestate": "vendor=1"}
    assert Job.from_value("q", "j", job().to_value()).trace is None


@pytest.mark.parametrize(
    "stored",
    [
        "00-abc",  # not a map
        {"traceparent": "00-xyz"},
        {"traceparent": PARENT.upper()},
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},  # the invalid all-zero trace id
        {"traceparent": f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01"},
        {"traceparent": PARENT, "tracestate": "x" * (MAX_TRACESTATE + 1)},
        {"traceparent": PARENT, "tracestate": "bad\nline"},
        {"traceparent": PARENT, "tracestate": 7},
        {"traceparent": PARENT, "baggage": "k=v"},  # an unknown member
        {"tracestate": "k=v"},
    ],
)
def test_trace_context_of_the_wrong_shape_makes_the_record_corrupt(stored: Any) -> None:
    record = unpack_value(job().to_value())
    record["tc"] = stored
    with pytest.raises(CorruptValue, match="job record 'j' is malformed"):
        Job.from_value("q", "j", pack_value(record))
    with pytest.raises(ValueError, match="trace context"):
        check_trace(stored)
