"""An App that traces: ``--app tests.acceptance.otel_app:app``.

It configures OpenTelemetry's SDK as an application would, with an exporter that
appends each finished span to ``$QUICK_TEST_OUT`` as a JSON line (what the test reads
across the process boundary). Handlers: ``traced:ok`` (typed), ``traced:fail`` (always
raises) and ``traced:tx`` (takes the transaction).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import quick

_lock = threading.Lock()


class FileExporter(SpanExporter):
    """Each finished span as one JSON line: ids (hex), parent, name, kind, attributes, status."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with _lock, open(self.path, "a") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                out.write(json.dumps(span_fields(span, context.trace_id, context.span_id)) + "\n")
        return SpanExportResult.SUCCESS


def span_fields(span: ReadableSpan, trace_id: int, span_id: int) -> dict[str, object]:
    return {
        "name": span.name,
        "trace_id": f"{trace_id:032x}",
        "span_id": f"{span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "kind": span.kind.name,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    }


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["QUICK_TEST_OUT"])))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("otel_app")

app = quick.App()


@app.job("traced:ok")
def ok(*, n: int) -> int:
    with tracer.start_as_current_span("inside the handler"):
        return n


@app.job("traced:fail", max_attempts=1)
def fail(*, n: int) -> None:
    raise RuntimeError(f"boom {n}")


@app.job("traced:tx")
def in_transaction(tr: quick.Transaction, payload: object, meta: quick.Meta) -> None:
    tr.set(b"traced/" + meta.job_id.encode(), b"done")
