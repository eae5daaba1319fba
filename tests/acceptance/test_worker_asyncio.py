"""``quick worker`` runs asyncio handlers: a real worker process, a real asyncio TCP
server on 127.0.0.1, and ``quick.cancel`` stopping a running asyncio job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import quick
from tests.acceptance.processes import record_lines, start_worker, stop_worker, wait_until
from tests.asyncio_helpers import EchoServer

APP = "tests.acceptance.asyncio_app:app"


@pytest.fixture
def echo_port() -> Iterator[int]:
    with EchoServer() as server:
        yield server.port


def test_worker_asyncio_handlers_talk_to_a_server_and_a_running_one_is_cancelled(
    tmp_path: Path, echo_port: int
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    out = tmp_path / "out.txt"
    with quick.open(url) as db:
        echoes = {quick.enqueue(db, "t", "echo", [echo_port, f"hi{i}"]): f"HI{i}" for i in range(5)}
        waiting = quick.enqueue(db, "t", "wait", None)
        worker = start_worker(url, out, APP, "--concurrency", "8", "--lease-seconds", "1")
        try:
            wait_until(
                lambda: (
                    len([r for r in record_lines(out) if r[0] == "echo"]) == 5
                    and ["start", waiting] in record_lines(out)
                ),
                60,
                "the echo jobs and the wait job to start",
            )

            def progress_written() -> bool:
                job = quick.get_job(db, waiting)
                return job is not None and job.progress is not None

            wait_until(progress_written, 30, "the wait job's progress in its record")
            assert quick.cancel(db, waiting) is True
            wait_until(
                lambda: quick.job_state(db, waiting) is quick.JobState.CANCELLED,
                30,
                "the running job to end cancelled",
            )
        finally:
            err = stop_worker(worker)
        assert worker.returncode == 0, err.decode()
        replies = {r[1]: r[2] for r in record_lines(out) if r[0] == "echo"}
        assert replies == echoes
        assert ["cancelled", waiting] in record_lines(out)
        assert {quick.job_state(db, job) for job in echoes} == {quick.JobState.COMPLETED}
