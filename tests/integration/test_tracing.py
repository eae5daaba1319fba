"""Tracing in one process (the ``otel`` extra, the SDK's in-memory exporter): every
producer call records the active span's context (sync, async on asyncio and trio, in
batches, typed), a consumer runs each handler in a child span of it, a workflow's steps
join their run's trace, and a process that never imported OpenTelemetry loads none of it."""

from __future__ import annotations

from tests.extras import require_otel

require_otel()

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import quick
import quick.aio
import workflow
import workflow.aio
from consumer import Consumer, ConsumerConfig
from keyspace.protocol import Database
from quick.testing import drain
from workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def finished() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once: OpenTelemetry refuses a second), emptied."""
    if trace.get_tracer_provider() is not _PROVIDER:
        trace.set_tracer_provider(_PROVIDER)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def tracer() -> trace.Tracer:
    return _PROVIDER.get_tracer("tests")


def ids(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def traceparent_of(db: Database, job_id: str) -> str | None:
    job = quick.get_job(db, job_id)
    assert job is not None
    return None if job.trace is None else job.trace["traceparent"]


def handler_spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {
        str(span.attributes["quick.job_id"]): span
        for span in exporter.get_finished_spans()
        if span.attributes and "quick.job_id" in span.attributes
    }


def test_tracing_every_sync_producer_call_records_the_active_span(
    db: Database, finished: InMemorySpanExporter
) -> None:
    app = quick.App()

    @app.job("typed")
    def typed(*, n: int) -> None:
        pass

    with tracer().start_as_current_span("request") as request:
        one = quick.enqueue(db, "t", "plain", {})
        many = quick.enqueue_many(db, [{"queue_id": "t", "topic": "plain"}] * 2)
        through = typed.enqueue(db, "t", n=1)
    outside = quick.enqueue(db, "t", "plain", {})
    trace_id, span_id = ids(request)
    for job_id in [one, *many, through]:
        parent = traceparent_of(db, job_id)
        assert parent is not None
        assert parent.startswith(f"00-{trace_id}-{span_id}-")
    assert traceparent_of(db, outside) is None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_tracing_async_producer_calls_record_the_span_of_the_callers_loop(
    db: Database, finished: InMemorySpanExporter, anyio_backend: str
) -> None:
    with tracer().start_as_current_span("request") as request:
        one = await quick.aio.enqueue(db, "t", "plain", {})
        (many,) = await quick.aio.enqueue_many(db, [{"queue_id": "t", "topic": "plain"}])

        async def body(tr: quick.aio.AsyncTransaction) -> str:
            return await quick.aio.enqueue(tr, "t", "plain", {})

        joined = await quick.aio.transact(db, body)
        run_id = await workflow.aio.start_run(
            db, Workflow("async.flow").step("a", topic="wf.a"), None, queue_id="t"
        )
    trace_id, span_id = ids(request)
    for job_id in (one, many, joined):
        assert (traceparent_of(db, job_id) or "").startswith(f"00-{trace_id}-{span_id}-")
    (step,) = [job for job in quick.list_jobs(db, "t") if job.topic == "wf.a"]  # the run's step
    assert step.trace is not None
    assert step.trace["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert workflow.inspect_run(db, run_id).status == "running"


def test_tracing_consumer_runs_each_handler_in_a_child_span_with_its_outcome(
    db: Database, finished: InMemorySpanExporter
) -> None:
    app = quick.App()

    @app.job("ok")
    def ok(payload: Any, meta: quick.Meta) -> None:
        pass

    @app.job("snooze")
    def snooze(*, n: int) -> None:
        raise quick.Snooze(3600)

    @app.job("drop")
    async def drop(payload: Any, meta: quick.Meta) -> None:
        raise quick.Discard("not wanted")

    @app.job("slow", timeout=0.05, max_attempts=1, loop="trio")
    async def slow(payload: Any, meta: quick.Meta) -> None:
        await trio.sleep(10)

    with tracer().start_as_current_span("request") as request:
        jobs = {
            "ok": quick.enqueue(db, "t", "ok", {}),
            "snooze": snooze.enqueue(db, "t", n=1),
            "drop": quick.enqueue(db, "t", "drop", {}),
            "slow": quick.enqueue(db, "t", "slow", {}),
        }

    async def main() -> None:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            while len(handler_spans(finished)) < len(jobs):
                await trio.sleep(0.02)
            consumer.stop()

    trio.run(main)
    spans = handler_spans(finished)
    trace_id, span_id = ids(request)
    outcomes = {}
    for topic, job_id in jobs.items():
        span = spans[job_id]
        assert span.parent is not None
        assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (
            trace_id,
            span_id,
        )
        assert span.attributes is not None
        assert span.attributes["quick.topic"] == topic
        assert span.attributes["quick.queue"] == "t"
        assert span.attributes["quick.attempt"] == 1
        outcomes[topic] = span.attributes["quick.outcome"]
    assert outcomes == {
        "ok": "completed",
        "snooze": "snoozed",
        "drop": "discarded",
        "slow": "cancelled",  # the timeout cancelled it
    }


def test_tracing_workflow_steps_join_the_trace_their_run_started_in(
    db: Database, finished: InMemorySpanExporter
) -> None:
    app = quick.App()

    @app.job("wf.fetch")
    def fetch(payload: Any, meta: quick.Meta) -> int:
        return 1

    @app.job("wf.charge")
    def charge(payload: Any, meta: quick.Meta) -> str:
        return "charged"

    wf = (
        Workflow("traced.flow")
        .step("fetch", topic="wf.fetch")
        .sleep("pause", seconds=0.01, after=["fetch"])
        .step("charge", topic="wf.charge", after=["pause"])
    )
    finished_runs: list[str] = []
    wf.on_run_finished(lambda event: finished_runs.append(event.run_id))
    with tracer().start_as_current_span("start") as start:
        run_id = workflow.start_run(db, wf, {"c": 1}, queue_id="t", app=app)
    untraced = workflow.start_run(db, wf, {"c": 2}, queue_id="t", app=app)
    drain(db, app, with_scheduled=True)
    assert workflow.inspect_run(db, run_id).status == "succeeded"
    trace_id, span_id = ids(start)
    by_run: dict[str, list[tuple[str, str | None]]] = {}
    for span in handler_spans(finished).values():
        parent = None if span.parent is None else f"{span.parent.span_id:016x}"
        assert span.attributes is not None
        key = run_id if f"{span.context.trace_id:032x}" == trace_id else untraced
        by_run.setdefault(key, []).append((str(span.attributes["quick.topic"]), parent))
    # Every step of the traced run, successors enqueued by the worker included, is a
    # child of the span the run started in; the other run's steps are not.
    # Its hook's item (on_run_finished) too.
    assert sorted(finished_runs) == sorted([run_id, untraced])
    assert sorted(by_run[run_id]) == [
        ("wf.charge", span_id),
        ("wf.fetch", span_id),
        ("workflow.hook", span_id),
        ("workflow.sleep", span_id),
    ]
    assert sorted(by_run[untraced]) == [
        ("wf.charge", None),
        ("wf.fetch", None),
        ("workflow.hook", None),
        ("workflow.sleep", None),
    ]


NO_OTEL = """
import importlib.abc, json, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

if sys.argv[1] == "absent":
    sys.meta_path.insert(0, Absent())
import trio
import quick
from consumer import Consumer, ConsumerConfig

db = quick.open(sys.argv[2])
app = quick.App()
ran = []

@app.job("plain")
def plain(payload, meta):
    ran.append(payload)

@app.job("typed")
async def typed(*, n):
    ran.append(n)

quick.enqueue(db, "t", "plain", 1)
typed.enqueue(db, "t", n=2)

async def main():
    consumer = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(consumer.run)
        while len(ran) < 2:
            await trio.sleep(0.01)
        consumer.stop()

trio.run(main)
job = quick.get_job(db, quick.enqueue(db, "t", "plain", 3))
print(json.dumps({"ran": sorted(ran), "otel": sorted(m for m in sys.modules if "opentelemetry" in m
    or m == "quick.tracing"), "trace": job.trace}))
"""


@pytest.mark.parametrize("installed", ["absent", "not imported"])
def test_tracing_costs_no_import_without_opentelemetry(tmp_path: Path, installed: str) -> None:
    """Importing quick, enqueueing and running a consumer loads neither OpenTelemetry nor
    quick.tracing, whether OpenTelemetry is not installed or only not used."""
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    done = subprocess.run(
        [sys.executable, "-c", NO_OTEL, installed, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"ran": [1, 2], "otel": [], "trace": None}
