"""An App for the asyncio worker test: ``--app tests.acceptance.asyncio_app:app``.

``echo`` jobs (payload ``[port, text]``) send their text to an asyncio TCP server on
127.0.0.1 and append ``echo <job_id> <reply>`` to ``$QUICK_TEST_OUT``; ``wait`` jobs
append ``start <job_id>``, record progress, then sleep on asyncio until cancelled,
appending ``cancelled <job_id>``. Both use asyncio only: they fail under trio.
"""

from __future__ import annotations

import asyncio
import os

import quick

app = quick.App()


def _record(*fields: str) -> None:
    with open(os.environ["QUICK_TEST_OUT"], "a") as out:
        out.write(" ".join(fields) + "\n")


@app.job("echo")
async def echo(payload: list[object], meta: quick.Meta) -> None:
    port, text = payload
    reader, writer = await asyncio.open_connection("127.0.0.1", int(str(port)))
    writer.write(f"{text}\n".encode())
    await writer.drain()
    reply = (await reader.readline()).decode().strip()
    writer.close()
    await writer.wait_closed()
    _record("echo", meta.job_id, reply)


@app.job("wait")
async def wait(payload: None, meta: quick.Meta) -> None:
    _record("start", meta.job_id)
    meta.progress(0.5, "waiting for a cancel")
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        _record("cancelled", meta.job_id)
        raise
