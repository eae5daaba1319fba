"""``meta.progress`` input and the signals a handler shares with its worker, without a store."""

from __future__ import annotations

import math

import pytest

import quick
from keyspace.codec import CorruptValue
from quick.jobs import Job, JobState
from quick.progress import MAX_PROGRESS_TEXT, JobSignals, Progress


@pytest.mark.parametrize(
    ("fraction", "text", "field"),
    [
        (-0.01, "", "fraction"),
        (1.01, "", "fraction"),
        (math.nan, "", "fraction"),
        (math.inf, "", "fraction"),
        (True, "", "fraction"),
        ("0.5", "", "fraction"),
        (None, "", "fraction"),
        (10**400, "", "fraction"),
        (0.5, None, "text"),
        (0.5, b"bytes", "text"),
        (0.5, "x" * (MAX_PROGRESS_TEXT + 1), "text"),
        (0.5, "é" * (MAX_PROGRESS_TEXT // 2 + 1), "text"),  # bytes, not characters
        (0.5, "\ud800", "text"),
    ],
)
def test_progress_refuses_bad_input_naming_it(fraction: object, text: object, field: str) -> None:
    signals = JobSignals()
    with pytest.raises(quick.InvalidArgument) as refused:
        signals.record(fraction, text)
    assert refused.value.field == field
    assert signals.progress is None
    assert signals.unwritten() is None


def test_progress_latest_value_is_written_once() -> None:
    signals = JobSignals()
    assert signals.unwritten() is None
    signals.record(0, "start")
    signals.record(1, "x" * MAX_PROGRESS_TEXT)
    pending = signals.unwritten()
    assert pending is not None
    version, latest = pending
    assert (latest.fraction, latest.text) == (1.0, "x" * MAX_PROGRESS_TEXT)
    signals.record(0.5)
    signals.written(version)  # an older version: the newer one still waits
    again = signals.unwritten()
    assert again is not None
    assert again[1].fraction == 0.5
    signals.written(again[0])
    assert signals.unwritten() is None


def test_progress_and_cancel_mark_round_trip_in_the_job_record() -> None:
    job = Job(id="j", queue="q", topic="t", payload=1, priority=1, vis_ms=0, state=JobState.LEASED)
    plain = job.to_value()
    marked = job.evolve(
        cancel_requested=True, progress=Progress(fraction=0.5, text="half", at_ms=7)
    )
    back = Job.from_value("q", "j", marked.to_value())
    assert back == marked
    assert Job.from_value("q", "j", plain) == job
    assert len(marked.to_value()) - len(plain) < 40  # small, and nothing when unused


@pytest.mark.parametrize(
    "stored", [[2, "x", 1], [0.5, 3, 1], [0.5, "x"], "half", [0.5, "x", True], [None, "", 0]]
)
def test_progress_stored_malformed_is_a_corrupt_record(stored: object) -> None:
    with pytest.raises(CorruptValue):
        Progress.from_stored(stored)


def test_meta_cancelled_reads_the_shared_flag() -> None:
    signals = JobSignals()
    meta = quick.Meta(
        topic="t", queue_id="q", job_id="j", attempt=1, lease_deadline_ms=0, signals=signals
    )
    assert meta.cancelled() is False
    signals.cancelled = True
    assert meta.cancelled() is True
