"""Pickup with P idle workers: ``scripts/bench.py``'s latency workload, plus how many claim
rounds the workers ran per job and their CPU per job while the stream ran.

The stream is bench.py's own (``bench.latency``: ``quick worker --processes P`` on a
fresh file, a readiness probe, 2 s idle, then 200 jobs/s for ``SECONDS`` from this
process), with two additions made by wrapping bench.py's helpers: the workers serve
Prometheus metrics (``--metrics-port``), scraped just before the stop for
``quick_claim_rounds_total`` (rounds committed), ``quick_claim_round_tries_total`` (tries,
conflicted ones included) and ``quick_claims_total``; and the CPU of the supervisor and
its consumers is read from ``/proc`` when the idle pause ends and again before the stop,
so start-up is not counted (``stream_cpu_ms_per_job``). Per-job figures divide by the
stream's jobs plus the probe.

    .venv/bin/python scripts/bench_pickup.py [PROCESSES [SECONDS]]     # default 2 10
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import bench
import benchlib
from bench_scaleout import _free_port_run
from prometheus_client.parser import text_string_to_metric_families

import quick

COUNTED = ("quick_claim_rounds_total", "quick_claim_round_tries_total", "quick_claims_total")
_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu(root: int) -> float:
    """CPU seconds of process ``root`` and its children."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def run(processes: int, seconds: float) -> dict[str, Any]:
    port = _free_port_run(processes)
    scraped: dict[tuple[int, str], float] = {}
    cpu: dict[str, float] = {}
    live: list[benchlib.Workers] = []

    def workers(url: str, count: int, settings: Any, temp: Path, records: Any) -> Any:
        argv = benchlib.worker_argv(url, bench.APP, processes, "--log-level", "warning")
        argv += ["--metrics-port", str(port)]
        live.append(benchlib.Workers(argv, bench.RECORD_ENV, records.path, temp / "log"))
        return live[-1]

    stop_cleanly = benchlib.Workers.stop_cleanly

    def scrape_then_stop(self: benchlib.Workers) -> None:
        cpu["end"] = _tree_cpu(self.proc.pid)
        try:
            for i in range(processes):
                url = f"http://127.0.0.1:{port + i}/metrics"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    text = reply.read().decode()
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name in COUNTED:
                            scraped[i, sample.name] = sample.value
        finally:  # a failed scrape must not leave the workers running
            stop_cleanly(self)

    def sleep(duration: float) -> None:
        time.sleep(duration)
        if duration == settings.latency_idle and live:  # the idle pause before the stream
            cpu["start"] = _tree_cpu(live[-1].proc.pid)

    settings = bench.Settings(
        scale=1,
        directory=None,
        concurrency=None,
        batch_size=None,
        drain_jobs=0,
        latency_rate=200.0,
        latency_seconds=seconds,
        latency_idle=2.0,
        timeout=120,
    )
    clock = types.SimpleNamespace(perf_counter=time.perf_counter, time=time.time, sleep=sleep)
    bench._workers, bench.time = workers, clock  # type: ignore[assignment]
    benchlib.Workers.stop_cleanly = scrape_then_stop  # type: ignore[method-assign]
    with quick.open(f"sqlite:///{Path(tempfile.mkdtemp(prefix='quick-pickup-')) / 'b.db'}") as db:
        result = bench.latency(db, settings)
    jobs = result["jobs"] + 1

    def per_job(name: str) -> float:
        return round(sum(v for (_, k), v in scraped.items() if k == name) / jobs, 3)

    return {
        "processes": processes,
        **{k: round(result[k], 2) for k in ("p50_ms", "p99_ms", "max_ms", "mean_ms")},
        "stream_cpu_ms_per_job": round((cpu["end"] - cpu["start"]) * 1000 / jobs, 3),
        "rounds_per_job": per_job("quick_claim_rounds_total"),
        "tries_per_job": per_job("quick_claim_round_tries_total"),
        "claims_per_job": per_job("quick_claims_total"),
        "rounds_by_process": [scraped.get((i, COUNTED[0])) for i in range(processes)],
        "load1": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    processes = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    print(f"quick {benchlib.code_version()}")
    print(json.dumps(run(processes, seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
