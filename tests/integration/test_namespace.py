"""Namespaces: ``?namespace=NAME`` keeps applications apart in one store.

Run on the sqlite engine here, and on fdb where a cluster is configured (the fdb tier of
the whole suite already runs every test in a fresh namespace, see ``tests/conftest.py``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import keyspace
import quick
from keyspace import InvalidURL, StorageError
from keyspace.layout import ROOT
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace, Versionstamp
from tests.conftest import engine_url


@pytest.fixture
def base_url(exact_engine: str, tmp_path: Path) -> str:
    """The engine's URL without a namespace (the fdb one is cleaned up by its namespaces)."""
    return engine_url(exact_engine, tmp_path).split("?")[0]


def _with(url: str, namespace: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}namespace={namespace}"


def test_namespace_isolates_keys_and_quick_data(base_url: str, tmp_path: Path) -> None:
    tag = tmp_path.name[-12:]
    billing, search = f"billing-{tag}", f"search-{tag}"
    with (
        keyspace.open(_with(base_url, billing)) as a,
        keyspace.open(_with(base_url, search)) as b,
    ):
        try:
            a.transact(lambda tr: tr.set(b"k", b"billing"))
            b.transact(lambda tr: tr.set(b"k", b"search"))
            assert a.transact(lambda tr: tr.get(b"k")) == b"billing"
            assert b.transact(lambda tr: tr.get_range(b"", b"\xff")) == [(b"k", b"search")]
            quick.enqueue(a, "invoices", "charge", {"n": 1})
            assert [q["queue"] for q in quick.list_queues(a)] == ["invoices"]
            assert quick.list_queues(b) == []
            assert (a.namespace, b.namespace) == (billing, search)
        finally:
            for db in (a, b):
                db.transact(lambda tr: tr.clear_range(b"", b"\xff"))


def test_namespace_default_keeps_the_layout_and_sees_no_namespace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with keyspace.open(url) as plain, keyspace.open(_with(url, "billing")) as billing:
        assert plain.namespace is None
        billing.transact(lambda tr: tr.set(ROOT.pack(("meta", "x")), b"1"))
        assert plain.transact(lambda tr: tr.get_range(*ROOT.range())) == []
        plain.transact(lambda tr: tr.set(ROOT.pack(("meta", "x")), b"2"))
        assert billing.transact(lambda tr: tr.get(ROOT.pack(("meta", "x")))) == b"1"
        raw = plain.transact(lambda tr: tr.get_range(b"", b"\xff"))
    prefix = keyspace.namespace.namespace_prefix("billing")
    assert raw == [(prefix + ROOT.pack(("meta", "x")), b"1"), (ROOT.pack(("meta", "x")), b"2")]


def test_namespace_wrapper_keeps_the_protocol(base_url: str, tmp_path: Path) -> None:
    space = Subspace(("t",))
    keys = [space.pack((i,)) for i in range(6)]
    with keyspace.open(_with(base_url, f"proto-{tmp_path.name[-12:]}")) as db:
        try:
            _exercise(db, space, keys)
        finally:
            db.transact(lambda tr: tr.clear_range(b"", b"\xff"))


def _exercise(db: Database, space: Subspace, keys: list[bytes]) -> None:
    db.transact(lambda tr: [tr.set(k, b"%d" % i) for i, k in enumerate(keys)])
    rows = db.transact(lambda tr: tr.get_range(keys[1], keys[5], limit=2, reverse=True))
    assert rows == [(keys[4], b"4"), (keys[3], b"3")]
    assert len(db.transact(lambda tr: tr.get_range_startswith(b""))) == 6
    assert db.transact(lambda tr: tr.snapshot.get_range(b"", b"\xff", limit=1)) == [(keys[0], b"0")]
    assert db.transact(lambda tr: tr.get_many([keys[2], b"absent"])) == [b"2", None]
    db.transact(lambda tr: tr.clear_range(keys[4], b"\xff"))
    db.transact(lambda tr: tr.add(space.pack(("n",)), b"\x05"))
    assert db.transact(lambda tr: tr.get(space.pack(("n",)))) == b"\x05"

    def stamp(tr: Transaction) -> object:
        tr.set_versionstamped_key(space.pack_with_versionstamp(("vs", Versionstamp())), b"e")
        tr.set_versionstamped_value(space.pack(("vv",)), b"\x00" * 10 + b"\x00\x00\x00\x00")
        return tr.get_versionstamp()

    stamped = db.transact(stamp).wait()  # type: ignore[attr-defined]
    ((key, value),) = db.transact(lambda tr: tr.get_range(*space.range(("vs",))))
    assert space.unpack(key)[1].tr_version == stamped
    assert value == b"e"
    assert db.transact(lambda tr: tr.get(space.pack(("vv",)))) == stamped

    for bad in (lambda tr: tr.set(b"\xff", b"v"), lambda tr: tr.get(b"\xff\x00")):
        with pytest.raises(StorageError) as caught:
            db.transact(bad)
        assert caught.value.code == 2004
    with pytest.raises(TypeError, match="key must be bytes, not str"):
        db.transact(lambda tr: tr.set("k", b"v"))

    tr = db.create_transaction()
    tr.get(keys[0])
    db.transact(lambda t: t.set(keys[0], b"theirs"))
    tr.set(keys[1], b"mine")
    with pytest.raises(StorageError) as caught:
        tr.commit()
    assert caught.value.code == 1020

    watching = db.create_transaction()
    watch = watching.watch(keys[2])
    watching.commit()
    fired = threading.Event()
    threading.Thread(target=lambda: watch.wait(10) and fired.set(), daemon=True).start()
    db.transact(lambda t: t.set(keys[2], b"changed"))
    assert fired.wait(10)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("", "must not be empty"), ("x" * 65, "at most 64"), ("a%01b", "printable")],
)
def test_namespace_names_are_validated(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(InvalidURL, match=problem):
        keyspace.open(f"sqlite:///{tmp_path / 'q.db'}?namespace={value}")
    assert not (tmp_path / "q.db").exists()


def test_namespace_survives_the_fault_injector(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}?namespace=billing&faults=not_committed:0.3&seed=2"
    with keyspace.open(url) as db:
        assert db.namespace == "billing"
        quick.enqueue(db, "q", "t", {})
        assert [q["queue"] for q in quick.list_queues(db)] == ["q"]
