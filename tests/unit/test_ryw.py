"""Read-your-writes on the sqlite engine checked against a plain dict model (hypothesis)."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keyspace
from keyspace.atomic import AtomicOp, apply
from keyspace.protocol import Transaction
from keyspace.ryw import RangeSet

KEYS = [bytes([k]) for k in range(1, 12)]
key = st.sampled_from(KEYS)
value = st.binary(min_size=0, max_size=3)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), key, value),
        st.tuples(st.just("clear"), key),
        st.tuples(st.just("clear_range"), key, key).map(lambda t: (t[0], *sorted(t[1:]))),
        st.tuples(st.just("atomic"), st.sampled_from(list(AtomicOp)), key, value),
        st.tuples(st.just("get"), key),
        st.tuples(st.just("range"), key, key, st.integers(0, 4), st.booleans()),
    ),
    max_size=25,
)


def _model_range(
    model: dict[bytes, bytes], begin: bytes, end: bytes, limit: int, reverse: bool
) -> list[tuple[bytes, bytes]]:
    rows = sorted((k, v) for k, v in model.items() if begin <= k < end)
    if reverse:
        rows.reverse()
    return rows[:limit] if limit else rows


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(initial=st.dictionaries(key, value, max_size=8), script=ops)
def test_ryw_transaction_reads_match_a_dict_model(
    tmp_path: Path, initial: dict[bytes, bytes], script: list[tuple]
) -> None:
    with keyspace.open(f"sqlite:///{tmp_path / 'ryw.db'}") as db:
        db.transact(lambda tr: tr.clear_range(b"\x00", b"\xff"))
        db.transact(lambda tr: [tr.set(k, v) for k, v in initial.items()])
        model = dict(initial)
        tr: Transaction = db.create_transaction()
        for step in script:
            name = step[0]
            if name == "set":
                tr.set(step[1], step[2])
                model[step[1]] = step[2]
            elif name == "clear":
                tr.clear(step[1])
                model.pop(step[1], None)
            elif name == "clear_range":
                tr.clear_range(step[1], step[2])
                for k in [k for k in model if step[1] <= k < step[2]]:
                    del model[k]
            elif name == "atomic":
                _, op, k, param = step
                getattr(tr, op.value)(k, param)
                result = apply(op, model.get(k), param)
                if result is None:
                    model.pop(k, None)
                else:
                    model[k] = result
            elif name == "get":
                assert tr.get(step[1]) == model.get(step[1])
            else:
                _, begin, end, limit, reverse = step
                expected = _model_range(model, begin, end, limit, reverse)
                assert tr.get_range(begin, end, limit=limit, reverse=reverse) == expected
        tr.commit()
        stored = db.transact(lambda t: t.get_range(b"\x00", b"\xff"))
        assert stored == sorted(model.items())


def test_rangeset_merges_overlapping_and_adjacent_ranges() -> None:
    ranges = RangeSet()
    ranges.add(b"c", b"e")
    ranges.add(b"a", b"b")
    ranges.add(b"b", b"c")
    ranges.add(b"x", b"z")
    assert list(zip(ranges.begins, ranges.ends, strict=True)) == [(b"a", b"e"), (b"x", b"z")]
    assert ranges.contains(b"d")
    assert not ranges.contains(b"e")
    assert ranges.intersects(b"d\xff", b"f")
    assert not ranges.intersects(b"e", b"x")


def test_atomic_add_wraps_like_twos_complement() -> None:
    assert apply(AtomicOp.ADD, struct.pack("<q", -1), struct.pack("<q", 1)) == bytes(8)
    assert apply(AtomicOp.MAX, None, b"") == b""
