"""Typed calls (``quick.typed``): a job enqueued through its handler, checked against the
handler's signature before anything is written, run with its arguments as keywords."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import quick
import quick.aio
from keyspace.protocol import Database, Transaction
from quick import InvalidArgument, JobHandler, Meta
from quick.testing import drain

pytestmark = pytest.mark.anyio


def make_app(seen: list[Any]) -> tuple[quick.App, dict[str, Any]]:
    """An app with one handler of each typed shape, recording what they receive."""
    app = quick.App()

    @app.job("email:send", priority=7)
    def send(*, to: str, subject: str = "hello") -> str:
        seen.append(("send", to, subject))
        return to

    @app.job("email:meta")
    def with_meta(meta: Meta, *, to: str) -> None:
        seen.append(("meta", meta.topic, meta.attempt, to))

    @app.job("ledger:book")
    def book(tr: Transaction, meta: Meta, *, amount: int) -> None:
        tr.set(b"ledger/" + meta.job_id.encode(), str(amount).encode())
        seen.append(("book", amount))

    @app.job("ping")
    def ping() -> None:
        seen.append(("ping",))

    @app.job("async:send")
    async def asend(meta: Meta, *, to: str) -> None:
        seen.append(("asend", to))

    @app.job("legacy")
    def legacy(payload: Any, meta: Meta) -> None:
        seen.append(("legacy", payload))

    return app, {
        "send": send,
        "meta": with_meta,
        "book": book,
        "ping": ping,
        "asend": asend,
        "legacy": legacy,
    }


def stored_count(db: Database, queue: str = "t") -> int:
    return sum(quick.queue_counts(db, queue).values())


def test_typed_handler_enqueues_through_itself_and_runs_with_its_arguments(db: Database) -> None:
    seen: list[Any] = []
    app, h = make_app(seen)
    job_id = h["send"].enqueue(db, "t", to="ada@example.com")
    job = quick.get_job(db, job_id)
    assert job is not None
    assert (job.topic, job.payload, job.priority) == ("email:send", {"to": "ada@example.com"}, 7)
    h["meta"].enqueue(db, "t", to="bob")
    h["ping"].enqueue(db, "t")
    h["asend"].enqueue(db, "t", to="carol")
    assert not isinstance(h["legacy"], JobHandler)
    quick.enqueue(db, "t", "legacy", {"x": 1})
    drain(db, app)
    assert sorted(seen) == sorted(
        [
            ("send", "ada@example.com", "hello"),
            ("meta", "email:meta", 1, "bob"),
            ("ping",),
            ("asend", "carol"),
            ("legacy", {"x": 1}),
        ]
    )


def test_typed_handler_in_a_transaction_commits_its_writes_with_the_completion(
    db: Database,
) -> None:
    seen: list[Any] = []
    app, h = make_app(seen)

    @quick.transactional
    def place(tr: Transaction) -> str:
        tr.set(b"orders/o-1", b"placed")
        return str(h["book"].enqueue(tr, "t", amount=12))

    job_id = place(db)
    drain(db, app)
    assert db.transact(lambda tr: tr.get(b"ledger/" + job_id.encode())) == b"12"
    assert quick.job_state(db, job_id) is quick.JobState.COMPLETED


def test_typed_handler_is_still_the_plain_function() -> None:
    seen: list[Any] = []
    _, h = make_app(seen)
    assert h["send"](to="x", subject="y") == "x"
    assert h["send"].__name__ == "send"
    assert seen == [("send", "x", "y")]


def test_plain_handler_with_keyword_only_options_of_its_own_is_not_typed(db: Database) -> None:
    app = quick.App()
    seen: list[Any] = []

    def handler(payload: Any, meta: Meta, *, tag: str = "default") -> None:
        seen.append((payload, tag))

    assert app.job("plain")(handler) is handler  # not a JobHandler
    quick.enqueue(db, "q", "plain", {"gift": True})
    drain(db, app)
    assert seen == [({"gift": True}, "default")]


def test_typed_call_options_set_priority_delay_job_id_and_unique_key(db: Database) -> None:
    _, h = make_app([])
    send = h["send"]
    first = send.using(priority=1, delay=60, job_id="welcome:ada").enqueue(db, "t", to="ada")
    assert first == "welcome:ada"
    again = send.using(job_id="welcome:ada").enqueue(db, "t", to="someone else")
    assert again == "welcome:ada"  # the same id adds nothing
    job = quick.get_job(db, first)
    assert job is not None
    assert job.priority == 1
    assert job.state is quick.JobState.SCHEDULED
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    at_job = send.using(at=later, unique_key="u").enqueue(db, "t", to="bob")
    assert send.using(unique_key="u").enqueue(db, "t", to="carol") == at_job
    assert stored_count(db) == 2


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda h, db: h["send"].enqueue(db, "t"), "to"),  # missing
        (lambda h, db: h["send"].enqueue(db, "t", to="a", cc="b"), "cc"),  # unknown
        (lambda h, db: h["send"].enqueue(db, "t", "a"), "args"),  # positional
        (lambda h, db: h["send"].enqueue(db, "t", to=object()), "to"),  # not storable
        (lambda h, db: h["send"].enqueue(db, "t", to={1, 2}), "to"),
        (lambda h, db: h["send"].enqueue(db, "", to="a"), "queue_id"),
        (lambda h, db: h["book"].enqueue(db, "t", amount=2**70), "amount"),
        (lambda h, db: h["send"].using(priority="high"), "priority"),
        (lambda h, db: h["send"].using(delay=-1), "delay"),
        (lambda h, db: h["send"].using(job_id=""), "job_id"),
        (lambda h, db: h["send"].using(max_attempts=0), "max_attempts"),
        (lambda h, db: h["send"].spec("t", to="a", bcc=1), "bcc"),
        # Enqueueing by topic through the app checks a typed handler's arguments too.
        (lambda h, db: h["send"].app.enqueue(db, "t", "email:send", {"too": "a"}), "to"),
    ],
)
def test_typed_call_refuses_bad_arguments_before_writing(
    db: Database, call: Any, field: str
) -> None:
    _, h = make_app([])
    with pytest.raises(InvalidArgument) as refused:
        call(h, db)
    assert refused.value.field == field
    assert stored_count(db) == 0


def test_typed_handler_registration_refuses_shapes_it_cannot_call() -> None:
    app = quick.App()
    with pytest.raises(InvalidArgument, match="at most"):

        @app.job("bad")
        def bad(a: Any, b: Any, c: Any, *, d: int) -> None:
            pass

    with pytest.raises(InvalidArgument, match="no \\*args"):

        @app.job("bad2")
        def bad2(*args: Any, d: int) -> None:
            pass


def test_a_stored_payload_that_does_not_fit_fails_the_attempt_and_dead_letters(
    db: Database,
) -> None:
    seen: list[Any] = []
    app, _ = make_app(seen)
    quick.enqueue(db, "t", "email:send", {"wrong": 1}, max_attempts=1)  # not through the app
    quick.enqueue(db, "t", "email:send", [1, 2], max_attempts=1)
    drain(db, app)
    assert seen == []
    dead = quick.list_dead(db, "t")
    assert len(dead) == 2
    errors = sorted(letter.error or "" for letter in dead)
    assert "needs this argument" in errors[0] or "needs this argument" in errors[1]
    assert any("takes keyword arguments" in error for error in errors)


def test_typed_specs_enqueue_many_in_one_transaction(db: Database) -> None:
    seen: list[Any] = []
    app, h = make_app(seen)
    ids = quick.enqueue_many(
        db,
        [h["send"].using(priority=3).spec("t", to="a"), h["ping"].spec("t")],
    )
    assert len(ids) == 2
    job = quick.get_job(db, ids[0])
    assert job is not None
    assert job.priority == 3
    drain(db, app)
    assert sorted(seen) == [("ping",), ("send", "a", "hello")]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_typed_handler_aenqueue_on_a_database_and_in_an_async_transaction(
    db: Database,
) -> None:
    _, h = make_app([])
    first = await h["asend"].aenqueue(db, "t", to="ada")

    async def place(tr: quick.aio.AsyncTransaction) -> str:
        tr.set(b"orders/o-2", b"placed")
        return str(await h["send"].using(job_id="book:o-2").aenqueue(tr, "t", to="bob"))

    second = await quick.aio.transact(db, place)
    assert second == "book:o-2"
    with pytest.raises(InvalidArgument) as refused:
        await h["send"].aenqueue(db, "t", to="a", nope=1)
    assert refused.value.field == "nope"
    jobs = [quick.get_job(db, first), quick.get_job(db, second)]
    assert [(job.topic, job.payload) for job in jobs if job is not None] == [
        ("async:send", {"to": "ada"}),
        ("email:send", {"to": "bob"}),
    ]
    assert db.transact(lambda tr: tr.get(b"orders/o-2")) == b"placed"
