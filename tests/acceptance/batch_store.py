"""A store with one batch in it, for the batch views' tests (CLI and dashboard)."""

from __future__ import annotations

import quick
from quick.testing import drain

__all__ = ["make_batch"]


def make_batch(url: str) -> str:
    """An open batch of three members on queue ``q``, drained: two completed, one discarded."""
    app = quick.App()

    @app.job("work")
    def work(payload: int, meta: quick.Meta) -> None:
        if payload == 2:
            raise quick.Discard("no")

    with quick.open(url) as db:
        batch = quick.enqueue_batch(
            db, "q", [("work", i) for i in range(3)], on_complete=("done", None), keep_open=True
        )
        drain(db, app, queue_id="q")
    return batch
