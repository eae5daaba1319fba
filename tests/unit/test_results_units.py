"""The pure parts of job results: encoding and its limits, timeouts, and how large
results are cut into commits."""

from __future__ import annotations

from typing import Any

import pytest

import quick
from keyspace.codec import CorruptValue, pack_value
from keyspace.limits import VALUE_LIMIT
from quick.jobs import Claim
from quick.migration_tombstones import _parts
from quick.outcomes import RESULT_BYTES_PER_COMMIT, Attempt, _by_size, with_result
from quick.results import MAX_RESULT_BYTES, check_timeout, decode_result, encode_result


def claim(n: int = 0) -> Claim:
    return Claim(
        job_id=f"j{n}", queue_id="q", topic="t", payload=None, attempt=1, owner="o",
        lease_until_ms=1, token="k",
    )  # fmt: skip


CONFIG = quick.JobConfig(topic="t", handler=lambda payload, meta: None)


def test_encode_result_none_stores_nothing() -> None:
    assert encode_result(None) is None


def test_encode_result_round_trips_through_the_record() -> None:
    value = {"a": [1, 2.5, "x", b"\x00"], "n": None}
    data = encode_result(value)
    assert data is not None
    assert decode_result(data) == {"rv": value}


def test_encode_result_refuses_what_msgpack_cannot_encode() -> None:
    with pytest.raises(quick.InvalidPayload) as raised:
        encode_result({"when": object()})
    assert raised.value.field == "result"


def test_encode_result_refuses_a_record_over_the_value_limit() -> None:
    assert MAX_RESULT_BYTES == VALUE_LIMIT
    encode_result(b"x" * (VALUE_LIMIT - 100))
    with pytest.raises(quick.InvalidArgument, match="result: encodes to 100"):
        encode_result(b"x" * VALUE_LIMIT)


@pytest.mark.parametrize(
    "data",
    [pack_value([1]), pack_value({"rv": 1, "at": 2}), pack_value({"e": 5}), b"\x07junk"],
)
def test_decode_result_refuses_what_is_not_a_result_record(data: bytes) -> None:
    with pytest.raises(CorruptValue):
        decode_result(data)


@pytest.mark.parametrize(("given", "expected"), [(None, None), (0, 0.0), (2, 2.0), (0.5, 0.5)])
def test_check_timeout_accepts_seconds_or_none(given: Any, expected: float | None) -> None:
    assert check_timeout(given) == expected


@pytest.mark.parametrize("given", [-0.1, float("inf"), float("nan"), 10**400, "1", True, [1]])
def test_check_timeout_refuses_the_rest(given: Any) -> None:
    with pytest.raises(quick.InvalidArgument) as raised:
        check_timeout(given)
    assert raised.value.field == "timeout"


def test_with_result_encodes_a_success_and_fails_an_unstorable_one() -> None:
    done = with_result(Attempt(claim(), CONFIG, None, [1, 2]))
    assert done.result == encode_result([1, 2])
    failed = with_result(Attempt(claim(), CONFIG, None, {1, 2}))
    assert isinstance(failed.error, quick.InvalidPayload)
    assert failed.result is None
    error = ValueError("x")
    assert with_result(Attempt(claim(), CONFIG, error, [1])).result is None


def test_by_size_cuts_runs_at_the_commit_share() -> None:
    big = b"x" * (RESULT_BYTES_PER_COMMIT // 3)
    attempts = [Attempt(claim(n), CONFIG, None, None, big) for n in range(7)]
    attempts.insert(2, Attempt(claim(99), CONFIG))  # no result: costs nothing
    runs = list(_by_size(attempts))
    assert [len(run) for run in runs] == [4, 3, 1]
    assert [a for run in runs for a in run] == attempts
    assert list(_by_size([])) == [[]]


def test_migration_parts_cut_tombstones_by_result_bytes() -> None:
    share = 2_000_000
    found = [(1, f"j{n}", b"t", b"r" * (share // 2)) for n in range(5)] + [(1, "x", b"t", None)]
    parts = _parts(found)
    assert [len(p) for p in parts] == [2, 2, 2]
    assert [t for p in parts for t in p] == found
    assert _parts([]) == []
