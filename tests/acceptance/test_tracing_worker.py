"""One trace from a producer's span to the handler's span in a real ``quick worker``
process (the ``otel`` extra): the job carries the producer's context across the store,
and the worker's app exports its spans to a file this test reads."""

from __future__ import annotations

from tests.extras import require_otel

require_otel()

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import quick
from tests.acceptance.processes import start_worker, stop_worker, wait_until

pytestmark = pytest.mark.slow


def spans(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line]


def by_job(out: Path) -> dict[str, dict[str, Any]]:
    return {
        span["attributes"]["quick.job_id"]: span
        for span in spans(out)
        if "quick.job_id" in span["attributes"]
    }


def test_tracing_worker_continues_the_producers_trace_with_the_outcome(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    out = tmp_path / "spans.jsonl"
    producer = TracerProvider().get_tracer("producer")  # not global: only its context travels
    db = quick.open(url)
    try:
        with producer.start_as_current_span("POST /signup") as request:
            ok_id = quick.enqueue(db, "tenant-1", "traced:ok", {"n": 3})
            fail_id = quick.enqueue(db, "tenant-1", "traced:fail", {"n": 4})
            tx_id = quick.enqueue(db, "tenant-1", "traced:tx", None)
        untraced_id = quick.enqueue(db, "tenant-1", "traced:ok", {"n": 5})  # no span active
        context = request.get_span_context()
        trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        job = quick.get_job(db, ok_id)
        assert job is not None
        assert job.trace is not None
        assert job.trace["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
        untraced = quick.get_job(db, untraced_id)
        assert untraced is not None
        assert untraced.trace is None

        worker = start_worker(url, out, "tests.acceptance.otel_app:app")
        try:
            wait_until(lambda: len(by_job(out)) == 4, 60, "four handler spans")
        finally:
            err = stop_worker(worker)
        assert worker.returncode == 0, err.decode()
    finally:
        db.close()

    handled = by_job(out)
    for job_id in (ok_id, fail_id, tx_id):
        span = handled[job_id]
        assert (span["trace_id"], span["parent_id"]) == (trace_id, span_id), span
        assert span["kind"] == "CONSUMER"
    ok, fail, tx = handled[ok_id], handled[fail_id], handled[tx_id]
    assert ok["name"] == "traced:ok process"
    assert ok["attributes"] == {
        "messaging.system": "quick",
        "messaging.operation.type": "process",
        "quick.queue": "tenant-1",
        "quick.topic": "traced:ok",
        "quick.job_id": ok_id,
        "quick.attempt": 1,
        "quick.outcome": "completed",
    }
    assert ok["status"] == "UNSET"
    assert (fail["attributes"]["quick.outcome"], fail["status"]) == ("failed", "ERROR")
    assert fail["events"] == ["exception"]
    assert tx["attributes"]["quick.outcome"] == "completed"
    # The handler's own span is a child of quick's, in the producer's trace.
    inner = [span for span in spans(out) if span["name"] == "inside the handler"]
    assert [span["parent_id"] for span in inner if span["trace_id"] == trace_id] == [ok["span_id"]]
    # A job enqueued outside any span starts a trace of its own.
    assert handled[untraced_id]["parent_id"] is None
    assert handled[untraced_id]["trace_id"] != trace_id
