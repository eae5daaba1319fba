"""The system keyspace on every engine: what FoundationDB refuses with 2004, and what it allows.

FoundationDB 7.3 (``fdbclient/ReadYourWrites.actor.cpp``) refuses a point read
(``get``) or a watch of any key ``>= b"\\xff"``, and a range read, clear or conflict
range with a bound ``> b"\\xff"``; so ``b"\\xff"`` is a legal range end but never a key,
and a conflict *key* ``b"\\xff"`` (the range ``[\\xff, \\xff\\x00)``) is refused. The
engines, the namespace wrapper and the fault injector must all agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import keyspace
from keyspace.errors import StorageError
from keyspace.protocol import Database, Transaction

REFUSED: list[tuple[str, Callable[[Transaction], Any]]] = [
    ("get", lambda tr: tr.get(b"\xff")),
    ("get past it", lambda tr: tr.get(b"\xff\x00")),
    ("snapshot get", lambda tr: tr.snapshot.get(b"\xff")),
    ("get_many of one", lambda tr: tr.get_many([b"\xff"])),
    ("get_many of several", lambda tr: tr.get_many([b"a", b"\xff/x"])),
    ("snapshot get_many", lambda tr: tr.get_many([b"a", b"\xff"], snapshot=True)),
    ("watch", lambda tr: tr.watch(b"\xff")),
    ("watch past it", lambda tr: tr.watch(b"\xff\xff")),
    ("read conflict key", lambda tr: tr.add_read_conflict_key(b"\xff")),
    ("write conflict key", lambda tr: tr.add_write_conflict_key(b"\xff")),
    ("read conflict range past it", lambda tr: tr.add_read_conflict_range(b"a", b"\xff\x00")),
    (
        "write conflict range past it",
        lambda tr: tr.add_write_conflict_range(b"\xff\x00", b"\xff\x01"),
    ),
    ("range read past it", lambda tr: tr.get_range(b"a", b"\xff\x00")),
    ("set", lambda tr: tr.set(b"\xff", b"v")),
    ("clear", lambda tr: tr.clear(b"\xff")),
]

ALLOWED: list[tuple[str, Callable[[Transaction], Any]]] = [
    ("range read to it", lambda tr: tr.get_range(b"", b"\xff")),
    ("snapshot range read to it", lambda tr: tr.snapshot.get_range(b"", b"\xff", reverse=True)),
    ("empty range at it", lambda tr: tr.get_range(b"\xff", b"\xff")),
    ("clear_range to it", lambda tr: tr.clear_range(b"zz", b"\xff")),
    ("read conflict range to it", lambda tr: tr.add_read_conflict_range(b"zz", b"\xff")),
    ("write conflict range to it", lambda tr: tr.add_write_conflict_range(b"zz", b"\xff")),
    ("conflict key just below it", lambda tr: tr.add_read_conflict_key(b"\xfe\xff")),
    ("get just below it", lambda tr: tr.get(b"\xfe\xff")),
]


@pytest.fixture(params=["plain", "namespaced"])
def system_db(request: pytest.FixtureRequest, url: str) -> Iterator[Database]:
    """The engine under test, bare and through ``?namespace=`` (fdb always has one)."""
    if request.param == "namespaced" and not url.startswith("fdb"):
        url += ("&" if "?" in url else "?") + "namespace=sys"
    elif request.param == "namespaced":
        pytest.skip("the fdb engine's URL already names a namespace")
    db = keyspace.open(url)
    try:
        yield db
    finally:
        if url.startswith("fdb"):
            db.transact(lambda tr: tr.clear_range(b"", b"\xff"))
        db.close()


@pytest.mark.parametrize(("what", "call"), REFUSED, ids=[name for name, _ in REFUSED])
def test_protocol_system_keys_are_refused_with_2004(
    system_db: Database, what: str, call: Callable[[Transaction], Any]
) -> None:
    tr = system_db.create_transaction()
    with pytest.raises(StorageError) as caught:
        call(tr)
    assert caught.value.code == 2004, what


@pytest.mark.parametrize(("what", "call"), ALLOWED, ids=[name for name, _ in ALLOWED])
def test_protocol_0xff_is_a_legal_range_end(
    system_db: Database, what: str, call: Callable[[Transaction], Any]
) -> None:
    system_db.transact(call)


def test_protocol_system_key_refusal_leaves_the_transaction_usable(system_db: Database) -> None:
    def body(tr: Transaction) -> bytes | None:
        with pytest.raises(StorageError):
            tr.get(b"\xff")
        tr.set(b"k", b"v")
        return tr.get(b"k")

    assert system_db.transact(body) == b"v"
    assert system_db.transact(lambda tr: tr.get(b"k")) == b"v"
