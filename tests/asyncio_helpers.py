"""asyncio pieces the asyncio-handler tests share: a TCP echo server on 127.0.0.1 in a
thread of its own, and a handler that waits until it is cancelled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import quick

__all__ = ["EchoServer", "register_waiter"]


class EchoServer:
    """An asyncio TCP server on 127.0.0.1, in a thread of its own: it answers each line
    with the line upper-cased, and counts the connections it served."""

    def __init__(self) -> None:
        self.port = 0
        self.served = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()
        self.served += 1

    def __enter__(self) -> EchoServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._answer, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def register_waiter(
    app: quick.App, topic: str, started: threading.Event, seen: list[str], *, loop: str = "asyncio"
) -> None:
    """Register on ``app`` a ``topic`` handler (on ``loop``) that sets ``started``, sleeps
    a minute, and appends ``"cancelled"`` to ``seen`` when cancelled (else ``"finished"``)."""
    if loop == "trio":
        import trio

        sleep: Callable[[float], Coroutine[Any, Any, None]] = trio.sleep
        cancelled: type[BaseException] = trio.Cancelled
    else:
        sleep, cancelled = asyncio.sleep, asyncio.CancelledError

    async def waiter(payload: Any, meta: quick.Meta) -> None:
        started.set()
        try:
            await sleep(60)
        except cancelled:
            seen.append("cancelled")
            raise
        seen.append("finished")

    app.job(topic, loop=loop)(waiter)
