"""Waiting out a store that does not answer: which errors, how long, and what is logged."""

from __future__ import annotations

import logging

import pytest
import trio

from consumer.resilience import (
    FIRST_DELAY,
    MAX_DELAY,
    REPORT_EVERY,
    Patience,
    is_outage,
    retry_delay,
)
from keyspace.errors import StorageError


def test_is_outage_tells_waiting_from_failing() -> None:
    for code in (1031, 1004, 1510, 1020, 1021, 1007, 1037):
        assert is_outage(StorageError(code)), code
    for code in (4100, 2101, 2102, 2004, 1025):
        assert not is_outage(StorageError(code)), code
    assert not is_outage(ValueError("not a storage error"))


def test_retry_delay_doubles_to_its_cap_with_jitter() -> None:
    assert retry_delay(1, 0.999_999) == pytest.approx(FIRST_DELAY)
    assert retry_delay(1, 0.0) == pytest.approx(FIRST_DELAY / 2)
    assert retry_delay(3, 0.999_999) == pytest.approx(4 * FIRST_DELAY)
    assert retry_delay(10_000, 0.999_999) == pytest.approx(MAX_DELAY)
    assert retry_delay(10_000, 0.999_999, cap=1.0) == pytest.approx(1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_patience_logs_an_outage_once_then_periodically_then_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    patience = Patience(clock)
    timed_out = StorageError(1031, "no answer")
    with caplog.at_level(logging.WARNING, logger="quick.consumer"):
        for _ in range(50):  # fifty failures within the first reporting period
            patience.failed("claim round", timed_out)
            patience.failed("lease renewal", timed_out)
            clock.now += 1
        assert len(_lines(caplog)) == 1
        assert "store unavailable: claim round failed" in _lines(caplog)[0]
        clock.now += REPORT_EVERY
        patience.failed("claim round", timed_out)
        patience.failed("claim round", timed_out)
        assert len(_lines(caplog)) == 2
        assert "still unavailable after 110 s" in _lines(caplog)[1]
        patience.succeeded("claim round")
        assert patience.outage, "the lease renewal has not succeeded yet"
        patience.succeeded("lease renewal")
        assert not patience.outage
        assert "available again after 110 s" in _lines(caplog)[2]
        patience.succeeded("claim round")
        assert len(_lines(caplog)) == 3


def test_patience_logs_a_flapping_store_at_most_once_a_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    patience = Patience(clock)
    full = StorageError(1510, "full")
    with caplog.at_level(logging.WARNING, logger="quick.consumer"):
        for _ in range(20):  # a claim fits now and then, recording never does
            patience.failed("recording attempts", full)
            patience.succeeded("recording attempts")
            clock.now += 1
        assert [line.split(":")[0] for line in _lines(caplog)] == [
            "store unavailable",
            "store available again after 0 s",
        ]
        clock.now += REPORT_EVERY
        patience.failed("recording attempts", full)
        assert len(_lines(caplog)) == 3, "a new period logs a new outage"


def test_patience_gives_up_retrying_when_told() -> None:
    clock = Clock()
    patience = Patience(clock)
    calls = 0

    def always_full() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            patience.stop_retrying(clock.now)
        raise StorageError(1510, "full")

    assert patience.retry_blocking("recording attempts", always_full) is None
    assert calls == 3


def test_patience_retry_resumes_when_the_store_answers() -> None:
    answers = [StorageError(1031), StorageError(1510), "claimed"]

    async def claim() -> str:
        answer = answers.pop(0)
        if isinstance(answer, StorageError):
            raise answer
        return answer

    async def main() -> str | None:
        return await Patience().retry("claim round", claim)

    assert trio.run(main) == "claimed"


def test_patience_retry_raises_what_waiting_cannot_cure() -> None:
    async def damaged() -> None:
        raise StorageError(4100, "damaged")

    async def main() -> None:
        await Patience().retry("claim round", damaged)

    with pytest.raises(StorageError, match="damaged"):
        trio.run(main)


def test_patience_retry_stops_when_its_event_is_set() -> None:
    async def main() -> None:
        stopping = trio.Event()

        async def unreachable() -> None:
            stopping.set()
            raise StorageError(1031)

        assert await Patience().retry("claim round", unreachable, until=stopping) is None

    trio.run(main)
