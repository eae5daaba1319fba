"""The batch pages: batches with their counts by outcome, and one batch with its members.

A blueprint of its own, registered next to :mod:`quick.dashboard.pages`; it reads
through :mod:`quick.batches` only.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from keyspace.codec import CorruptValue
from keyspace.layout import BATCHES
from quick.batches import batch_results, batch_status, list_batches
from quick.corruption import CorruptRecord
from quick.dashboard.state import state
from quick.errors import BatchNotFound

__all__ = ["batch_pages"]

batch_pages = Blueprint("batch_pages", __name__)

#: Batches on the list page, and members on a batch's page (a page at a time).
ROWS = 100


@batch_pages.get("/batches")
def batches() -> str:
    """Batches, oldest first, with their counts by outcome."""
    return render_template("batches.html", items=list_batches(state().db, limit=ROWS))


@batch_pages.get("/batch")
def batch() -> str:
    """One batch: open or closed, counts by outcome, callbacks, a page of its members."""
    batch_id = request.args.get("id", "").strip()
    if not batch_id:
        abort(400, "the 'id' parameter is required")
    after = request.args.get("after", "").strip() or None
    db = state().db
    try:
        status = batch_status(db, batch_id)
        members = batch_results(db, batch_id, after=after, limit=ROWS)
    except BatchNotFound:
        abort(404, f"no batch {batch_id!r}")
    except CorruptValue as error:
        problem = CorruptRecord(key=BATCHES.pack((batch_id,)), error=str(error))
        return render_template("error.html", title=f"Corrupt batch {batch_id}", problems=[problem])
    next_after = members[-1].job_id if len(members) >= ROWS else None
    return render_template("batch.html", status=status, members=members, next_after=next_after)
