"""``quick worker`` runs asyncio handlers: a real worker process, a real asyncio TCP
server on 127.0.0.1, and ``quick.cancel`` stopping a running asyncio job."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import quick
from tests.acceptance.processes import record_lines, start_worker, stop_worker, wait_until

APP = "tests.acceptance.asyncio_app:app"


@pytest.fixture
def echo_port() -> Iterator[int]:
    """An asyncio TCP server in a thread: answers each line upper-cased."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(asyncio.start_server(answer, "127.0.0.1", 0), loop)
    server = started.result(10)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


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
