"""A user module whose typed handlers and typed calls mypy accepts (strict)."""

from __future__ import annotations

from typing import Any

import quick
from quick import Meta, Transaction

app = quick.App()


@app.job("email:send")
def send(*, to: str, subject: str = "") -> str:
    return to + subject


@app.job("ledger:book")
def book(tr: Transaction, meta: Meta, *, amount: int) -> None:
    tr.set(meta.job_id.encode(), str(amount).encode())


@app.job("ping")
async def ping(meta: Meta, *, n: int) -> int:
    return n


@app.job("old")
def old(payload: Any, meta: Meta) -> None:
    pass


@app.job("old:tr")
def old_tr(tr: Transaction, payload: dict[str, Any], meta: Meta) -> None:
    pass


def use(db: quick.Database, tr: Transaction, meta: Meta) -> None:
    job_id: str = send.enqueue(db, "tenant", to="ada")
    send.using(priority=1, delay=5, job_id="x").enqueue(db, "tenant", to="ada", subject="hi")
    book.enqueue(tr, "tenant", amount=3)
    result: str = send(to="x")
    book(tr, meta, amount=3)
    old({"a": 1}, meta)
    old_tr(tr, {"a": 1}, meta)
    quick.enqueue_many(db, [send.spec("t", to="a"), book.spec("t", amount=1)])
    print(job_id, result)


async def ause(db: quick.Database) -> None:
    await send.aenqueue(db, "tenant", to="ada")
    n: int = await ping(Meta(topic="", queue_id="", job_id="", attempt=1, lease_deadline_ms=0), n=1)
    await ping.aenqueue(db, "tenant", n=2)
    print(n)
