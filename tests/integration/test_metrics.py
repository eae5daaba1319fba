"""A consumer's Prometheus metrics: jobs by outcome, durations, claims, lease losses, depth."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import quick
from consumer.metrics import ConsumerMetrics, deepest
from consumer.runtime import Consumer, ConsumerConfig
from keyspace.codec import pack_value, unpack_value
from keyspace.layout import queue_keys
from keyspace.protocol import Database
from tests.waiting import until


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """The embedded engine on a fresh file: depth figures see only this test's queues."""
    with quick.open(f"sqlite:///{tmp_path / 'm.db'}") as opened:
        yield opened


def _scrape(metrics: ConsumerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text exposition, keyed by name and labels."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _drain(db: Database, app: quick.App, metrics: ConsumerMetrics, done: Any) -> Consumer:
    async def main() -> Consumer:
        consumer = Consumer(db, app, ConsumerConfig(concurrency=2, cron=False), metrics=metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await until(lambda: done(consumer), 10.0)
            consumer.stop()
        return consumer

    return trio.run(main)


def test_metrics_count_jobs_by_topic_and_outcome(db: Database) -> None:
    app = quick.App()
    tries: list[int] = []

    @app.job("ok")
    def ok(payload: Any, meta: quick.Meta) -> None:
        pass

    @app.job("broken", max_attempts=1)
    def broken(payload: Any, meta: quick.Meta) -> None:
        raise ValueError("nope")

    @app.job("flaky", backoff=lambda attempt: 0.01)
    def flaky(payload: Any, meta: quick.Meta) -> None:
        tries.append(meta.attempt)
        if meta.attempt == 1:
            raise RuntimeError("first time")

    for i in range(3):
        quick.enqueue(db, "tenant-a", "ok", i)
    quick.enqueue(db, "tenant-b", "broken", None)
    quick.enqueue(db, "tenant-b", "flaky", None)
    metrics = ConsumerMetrics(depth_interval=None)
    consumer = _drain(db, app, metrics, lambda c: sum(c.outcomes.values()) == 6)

    samples = _scrape(metrics)
    assert consumer.outcomes == {"completed": 4, "dead_lettered": 1, "requeued": 1}
    assert _value(samples, "quick_jobs_total", topic="ok", outcome="completed") == 3
    assert _value(samples, "quick_jobs_total", topic="broken", outcome="dead_lettered") == 1
    assert _value(samples, "quick_jobs_total", topic="flaky", outcome="requeued") == 1
    assert _value(samples, "quick_jobs_total", topic="flaky", outcome="completed") == 1
    assert _value(samples, "quick_jobs_total", topic="ok", outcome="dead_lettered") is None
    assert _value(samples, "quick_job_duration_seconds_count", topic="ok") == 3
    assert _value(samples, "quick_job_duration_seconds_count", topic="flaky") == 2
    assert _value(samples, "quick_claims_total") == 6
    assert _value(samples, "quick_lease_losses_total") == 0
    assert _value(samples, "quick_jobs_running") == 0
    assert tries == [1, 2]


def test_metrics_observe_the_lease_left_as_each_handler_starts(db: Database) -> None:
    app = quick.App()

    @app.job("ok")
    def ok(payload: Any, meta: quick.Meta) -> None:
        pass

    @app.job("later", loop="trio")
    async def later(payload: Any, meta: quick.Meta) -> None:
        pass

    for i in range(3):
        quick.enqueue(db, "tenant-a", "ok", i)
    quick.enqueue(db, "tenant-a", "later", None)
    metrics = ConsumerMetrics(depth_interval=None)
    _drain(db, app, metrics, lambda c: sum(c.outcomes.values()) == 4)

    samples = _scrape(metrics)
    # 30 s leases, started at once: every job had nearly all of its lease left.
    assert _value(samples, "quick_job_lease_left_ratio_count") == 4
    assert _value(samples, "quick_job_lease_left_ratio_bucket", le="0.3") == 0
    assert _value(samples, "quick_job_lease_left_ratio_bucket", le="0.8333333333333334") == 0
    assert _value(samples, "quick_job_lease_left_ratio_bucket", le="1.0") == 4
    total = _value(samples, "quick_job_lease_left_ratio_sum")
    assert total is not None
    assert 3.5 < total <= 4


def test_metrics_count_a_lost_lease(db: Database) -> None:
    app = quick.App()
    started = trio.Event()

    @app.job("slow", loop="trio")
    async def slow(payload: Any, meta: quick.Meta) -> None:
        started.set()
        await trio.sleep(30)

    job = quick.enqueue(db, "tenant-a", "slow", None)
    key = queue_keys("tenant-a").job(job)
    metrics = ConsumerMetrics(depth_interval=None)

    async def main() -> None:
        config = ConsumerConfig(concurrency=1, lease_ms=300, cron=False)
        consumer = Consumer(db, app, config, metrics=metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(consumer.run)
            await started.wait()
            assert _value(_scrape(metrics), "quick_jobs_running") == 1
            db.transact(lambda tr: tr.set(key, pack_value({**unpack_value(tr.get(key)), "k": "x"})))
            await until(lambda: consumer.outcomes["lease_lost"] == 1, 10.0)
            consumer.stop()

    trio.run(main)
    samples = _scrape(metrics)
    assert _value(samples, "quick_lease_losses_total") == 1
    assert _value(samples, "quick_jobs_total", topic="slow", outcome="lease_lost") == 1


def test_metrics_depth_refresh_labels_only_the_deepest_queues(db: Database) -> None:
    app = quick.App()  # no handlers: the consumer never claims (nothing is due yet)
    for i, jobs in enumerate([1, 5, 3, 2]):
        for _ in range(jobs):
            quick.enqueue(db, f"q{i}", "later", None, delay=60)
    metrics = ConsumerMetrics(depth_interval=0.05, depth_top=2)
    _drain(db, app, metrics, lambda c: _value(_scrape(metrics), "quick_queues_with_work") == 4)

    samples = _scrape(metrics)
    labelled = {dict(labels)["queue"] for name, labels in samples if name == "quick_queue_depth"}
    assert labelled == {"q1", "q2"}
    assert _value(samples, "quick_queue_depth", queue="q1", state="scheduled") == 5
    assert _value(samples, "quick_queue_depth", queue="q2", state="scheduled") == 3
    assert _value(samples, "quick_queues_depth", state="scheduled") == 11
    assert _value(samples, "quick_queues_depth", state="ready") == 0

    metrics.set_depth([("q3", {"ready": 1})])  # a later refresh: q1 and q2 drop out
    samples = _scrape(metrics)
    labelled = {dict(labels)["queue"] for name, labels in samples if name == "quick_queue_depth"}
    assert labelled == {"q3"}
    assert _value(samples, "quick_queues_with_work") == 1


def test_metrics_deepest_ranks_pending_work_not_dead_letters() -> None:
    rows = [
        ("a", {"ready": 1, "scheduled": 0, "leased": 0, "dead": 100}),
        ("b", {"ready": 0, "scheduled": 2, "leased": 1, "dead": 0}),
        ("c", {"ready": 3, "scheduled": 0, "leased": 0, "dead": 0}),
    ]
    assert [queue for queue, _ in deepest(rows, 2)] == ["b", "c"]
    assert deepest(rows, 0) == []


def test_metrics_registries_are_per_consumer() -> None:
    first, second = ConsumerMetrics(), ConsumerMetrics()
    first.claims.inc(3)
    assert _value(_scrape(first), "quick_claims_total") == 3
    assert _value(_scrape(second), "quick_claims_total") == 0


def test_metrics_runtime_without_metrics_does_not_import_prometheus() -> None:
    code = "import json, sys; import consumer.runtime; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert "prometheus_client" not in json.loads(out.stdout)


def test_metrics_count_retries_by_error_code(db: Database) -> None:
    """A claim of a conflicting transaction shows as one more 1020 retry in the export."""
    metrics = ConsumerMetrics(depth_interval=None)
    key = b"\x15\x01retry-test"
    before = _scrape(metrics).get(
        ("quick_transaction_retries_total", frozenset({("code", "1020")})), 0
    )
    tries = 0

    def body(tr: Any) -> None:
        nonlocal tries
        tries += 1
        tr.get(key)
        if tries == 1:
            other = db.create_transaction()
            other.set(key, b"theirs")
            other.commit()  # lands between this try's read and its commit: a conflict
        tr.set(key, b"ours")

    db.transact(body)
    after = _scrape(metrics)[("quick_transaction_retries_total", frozenset({("code", "1020")}))]
    assert tries == 2
    assert after == before + 1
