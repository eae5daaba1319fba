"""The key layout decodes every key shape back into words; the codec refuses foreign bytes."""

from __future__ import annotations

import fdb.tuple as fdbtuple
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyspace import layout
from keyspace.codec import CorruptValue, pack_value, unpack_value
from keyspace.subspace import Subspace, Versionstamp


def test_layout_every_shape_decodes_to_its_meaning() -> None:
    samples = {
        ("ix", 1_700_000_000_000, "tenant-1"): "pointer index entry",
        ("ptr", "tenant-1"): "queue pointer",
        ("q", "tenant-1", "j", "job-1"): "job",
        ("q", "tenant-1", "r", 100, 1_700_000_000_000, "job-1"): "ready job",
        ("q", "tenant-1", "s", 1_700_000_000_000, "job-1"): "scheduled or leased job",
        ("q", "tenant-1", "n", "ready"): "queue counter",
        ("dl", "tenant-1", "job-1"): "dead letter",
        ("cron", "nightly"): "cron schedule",
    }
    for items, meaning in samples.items():
        line = layout.describe(layout.ROOT.pack(items))
        assert line.startswith(meaning), line
        assert "'tenant-1'" in line or "'nightly'" in line
    line = layout.describe(layout.ROOT.pack(("ix", 0, "t")))
    assert "1970-01-01T00:00:00.000+00:00" in line


def test_layout_unknown_and_foreign_keys_are_still_shown() -> None:
    assert layout.describe(layout.ROOT.pack(("zz", 1))).startswith("unknown quick key")
    assert layout.describe(b"\x01raw\x00").startswith("foreign key")
    assert layout.describe(b"\xfe\xfe").startswith("foreign key")


def test_subspace_range_holds_exactly_its_keys() -> None:
    space = Subspace(("a",))
    begin, end = space.range()
    assert begin < space.pack((1,)) < end
    assert not begin <= Subspace(("b",)).pack((1,)) < end
    assert space.unpack(space.pack((1, "x"))) == (1, "x")
    with pytest.raises(ValueError, match="not in this subspace"):
        space.unpack(Subspace(("b",)).pack((1,)))


@given(st.text(min_size=1, max_size=20))
def test_queue_keys_index_ranges_are_their_subspaces(queue: str) -> None:
    keys = layout.queue_keys(queue)
    ready, scheduled = layout.QUEUES[queue]["r"], layout.QUEUES[queue]["s"]
    assert keys.ready_range() == ready.range()
    assert keys.scheduled_range() == scheduled.range()
    assert keys.scheduled_range(41) == (scheduled.range()[0], scheduled.pack((42,)))


def test_subspace_packs_versionstamps_without_the_client_library() -> None:
    template = Subspace(("log",)).pack_with_versionstamp(("e", Versionstamp(user_version=7)))
    assert template[-4:] != b"\x00\x00\x00\x00"
    complete = Subspace(("log",)).pack(("e", Versionstamp(b"\x01" * 10, 7)))
    assert complete.endswith(b"\x01" * 10 + b"\x00\x07")


def test_codec_round_trips_and_rejects_corrupt_values() -> None:
    record = {"topic": "email:send", "payload": {"to": "a@b"}, "n": [1, 2.5, None, b"x"]}
    assert unpack_value(pack_value(record)) == record
    with pytest.raises(CorruptValue, match="unknown value format"):
        unpack_value(b"\x80garbage")
    with pytest.raises(CorruptValue, match="undecodable"):
        unpack_value(b"\x01\xc1")
    with pytest.raises(TypeError, match="cannot encode as msgpack"):
        pack_value({"when": object()})


@given(
    st.lists(
        st.one_of(
            st.text(),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.binary(max_size=8),
            st.none(),
        ),
        max_size=5,
    )
)
def test_subspace_pack_writes_the_same_bytes_as_fdb_tuple(items: list[object]) -> None:
    # quick packs text and small integers itself (the hot path); every key must still be
    # exactly fdb.tuple's encoding, so both engines and FoundationDB order keys alike.
    packed = Subspace(("qk",)).pack(tuple(items))
    assert packed == fdbtuple.pack(("qk", *items))
    assert tuple(fdbtuple.unpack(packed)) == ("qk", *items)


@given(
    st.lists(
        st.one_of(st.text(), st.integers(min_value=-(2**70), max_value=2**70), st.none()),
        max_size=4,
    ),
    st.integers(min_value=0, max_value=65535),
)
def test_subspace_versionstamp_template_is_fdb_tuples(items: list[object], order: int) -> None:
    # Journal keys (text, then an incomplete versionstamp) are packed without fdb.tuple;
    # the template, placeholder offset included, must be exactly fdb.tuple's.
    stamp = Versionstamp(user_version=order)
    template = Subspace(("wf", "j")).pack_with_versionstamp((*items, stamp))
    expected = fdbtuple.pack_with_versionstamp(("wf", "j", *items, stamp))
    assert template == expected
