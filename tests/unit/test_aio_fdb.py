"""The async transaction on the fdb engine, through a fake binding: its point reads,
commit and retry backoff are the binding's futures awaited through ``on_ready`` (no
thread of the pool), under asyncio and trio, and the loop runs while they are pending.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from keyspace.errors import StorageError
from keyspace.fdb_engine import FdbTransaction, _Watch
from quick import aio_pool, aio_waiting
from quick.aio import AsyncTransaction

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FakeFDBError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
        self.description = f"error {code}"


FAKE_FDB = types.SimpleNamespace(FDBError=FakeFDBError)


class FakeFuture:
    """Becomes ready ``delay`` seconds after its first ``on_ready``, from another thread
    (as the binding's network thread calls back)."""

    def __init__(self, value: Any = None, error: int | None = None, delay: float = 0.0) -> None:
        self._value = value
        self._error = error
        self._delay = delay
        self._ready = threading.Event()
        self.cancelled = False
        self.waited_before_ready = False

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def on_ready(self, callback: Callable[[FakeFuture], None]) -> None:
        self._callback = callback
        self._timer = threading.Timer(self._delay, self._fire)
        self._timer.start()

    def _fire(self) -> None:
        if not self._ready.is_set():
            self._ready.set()
            self._callback(self)

    def cancel(self) -> None:
        """As the binding's: the future fails with operation_cancelled (1101) at once."""
        self.cancelled = True
        self._timer.cancel()
        self._error = 1101
        self._fire()

    def wait(self) -> Any:
        if not self._ready.is_set():
            self.waited_before_ready = True  # a blocking wait: what must not happen
            self._ready.wait()
        if self._error is not None:
            raise FakeFDBError(self._error)
        return self._value

    @property
    def value(self) -> Any:
        return self.wait()


class FakeBinding:
    """A binding transaction whose operations return :class:`FakeFuture`s."""

    def __init__(self, delay: float = 0.0, commits: list[int | None] | None = None) -> None:
        self.delay = delay
        self.data = {b"k": b"v"}
        self.commits = list(commits or [None])
        self.futures: list[FakeFuture] = []
        self.snapshot = self

    def _future(self, **kwargs: Any) -> FakeFuture:
        future = FakeFuture(delay=self.delay, **kwargs)
        self.futures.append(future)
        return future

    def get(self, key: bytes) -> FakeFuture:
        return self._future(value=self.data.get(key))

    def set(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def commit(self) -> FakeFuture:
        return self._future(error=self.commits.pop(0))

    def on_error(self, error: FakeFDBError) -> FakeFuture:
        return self._future(error=None if error.code in (1020, 1021) else error.code)


@pytest.fixture
def no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(call: aio_pool.Call) -> None:
        raise AssertionError("the fdb path must not use the thread pool")

    monkeypatch.setattr(aio_waiting, "submit", refuse)


def transaction(binding: FakeBinding) -> AsyncTransaction:
    return AsyncTransaction(FdbTransaction(FAKE_FDB, binding))


async def test_aio_fdb_reads_and_commit_wait_on_callbacks(no_pool: None) -> None:
    binding = FakeBinding(delay=0.01)
    tr = transaction(binding)
    assert await tr.get(b"k") == b"v"
    assert await tr.snapshot.get(b"missing") is None
    assert await tr.get_many([b"k", b"missing"]) == [b"v", None]
    tr.set(b"k2", b"w")
    await tr.commit()
    assert binding.data[b"k2"] == b"w"
    assert not any(f.waited_before_ready for f in binding.futures)


async def test_aio_fdb_loop_runs_while_a_commit_is_pending(no_pool: None) -> None:
    tr = transaction(FakeBinding(delay=0.2))
    ticks = 0
    async with anyio.create_task_group() as group:

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.01)
                ticks += 1

        group.start_soon(ticker)
        await tr.commit()
        group.cancel_scope.cancel()
    assert ticks >= 5


async def test_aio_fdb_retry_goes_through_the_bindings_on_error(no_pool: None) -> None:
    binding = FakeBinding(commits=[1020, 1021, None])
    tr = transaction(binding)
    tries = 0
    while True:
        tries += 1
        try:
            await tr.commit()
            break
        except StorageError as error:
            await tr.on_error(error)
    assert tries == 3
    failing = transaction(FakeBinding(commits=[2101]))
    with pytest.raises(StorageError) as failed:
        await failing.commit()
    with pytest.raises(StorageError) as refused:
        await failing.on_error(failed.value)
    assert refused.value.code == 2101  # not retryable: on_error raises the error itself


async def test_aio_fdb_cancelled_wait_cancels_the_future(no_pool: None) -> None:
    binding = FakeBinding(delay=5.0)
    tr = transaction(binding)
    with anyio.move_on_after(0.05):
        await tr.get(b"k")
    assert binding.futures[0].cancelled


@pytest.fixture
def no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a FoundationDB watch is awaited through its callback")

    monkeypatch.setattr(aio_waiting, "threading", types.SimpleNamespace(Thread=refuse))


async def test_aio_fdb_watch_is_awaited_through_its_callback(no_thread: None) -> None:
    future = FakeFuture(delay=0.05)
    watch = _Watch(FAKE_FDB, future)
    assert await aio_waiting.await_watch(watch, 5.0) is True
    assert not watch.failed
    assert not future.waited_before_ready


async def test_aio_fdb_watch_wait_times_out_and_a_failure_fires(no_thread: None) -> None:
    slow = _Watch(FAKE_FDB, FakeFuture(delay=30.0))
    assert await aio_waiting.await_watch(slow, 0.05) is False
    slow.cancel()
    failing = _Watch(FAKE_FDB, FakeFuture(error=1020, delay=0.01))
    assert await aio_waiting.await_watch(failing, 5.0) is True
    assert failing.failed
