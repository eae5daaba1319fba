"""A user module with typed calls mypy must reject (each line marked ``# mypy: error``)."""

from __future__ import annotations

import quick

app = quick.App()


@app.job("email:send")
def send(*, to: str, subject: str = "") -> None:
    pass


def use(db: quick.Database) -> None:
    send.enqueue(db, "tenant", to="right")
    send.enqueue(db, "tenant", to=42)  # mypy: error
    send.enqueue(db, "tenant")  # mypy: error
    send.enqueue(db, "tenant", to="a", cc="b")  # mypy: error
    send.enqueue(db, "tenant", "a")  # mypy: error
    send.enqueue(db, to="a")  # mypy: error
    send(to=1)  # mypy: error


async def ause(db: quick.Database) -> None:
    await send.aenqueue(db, "tenant", to=b"bytes")  # mypy: error
