"""The action routes: requeue and purge dead letters, one job or all of a queue.

Only POST, only with ``--allow-actions`` (the app answers 403 before anything else
otherwise) and only with a valid CSRF token (Flask-WTF's ``CSRFProtect``). Each
action calls the library's own operation, one transaction per job or batch, then
redirects to the dead-letter page with a message (post/redirect/get).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from werkzeug.wrappers.response import Response

from keyspace.errors import QuickError
from quick.dashboard.state import state
from quick.operations import purge_all_dead, purge_dead, requeue_all_dead, requeue_dead

__all__ = ["actions", "BULK_CAP"]

actions = Blueprint("actions", __name__)

#: Most dead letters one "all of a queue" click requeues or purges; another click does
#: the rest. Bounds one request's time on a queue with very many dead letters.
BULK_CAP = 10_000
#: Dead letters read per batch while requeueing a whole queue.
BATCH = 200


def _field(name: str) -> str | None:
    value = request.form.get(name, "").strip()
    return value or None


def _back(queue: str) -> Response:
    return redirect(url_for("pages.dead", queue=queue), code=303)


@actions.post("/dead/requeue")
def requeue() -> Response:
    """Requeue one dead letter (``job``) or every dead letter of ``queue``."""
    queue = _field("queue") or abort(400, "queue is required")
    job_id = _field("job")
    db = state().db
    if job_id is not None:
        try:
            new_id = requeue_dead(db, queue, job_id)
        except QuickError as error:
            flash(f"could not requeue {job_id}: {error}", "error")
        else:
            flash(f"requeued {new_id} on {queue}", "ok")
        return _back(queue)
    done, failed = requeue_all_dead(db, queue, cap=BULK_CAP, batch=BATCH)
    failures = f"; {failed} could not be (corrupt, or a unique key is held)" if failed else ""
    flash(f"requeued {done} dead letters of {queue}{failures}", "ok")
    return _back(queue)


@actions.post("/dead/purge")
def purge() -> Response:
    """Delete one dead letter (``job``) or, with ``confirm``, every one of ``queue``."""
    queue = _field("queue") or abort(400, "queue is required")
    job_id = _field("job")
    db = state().db
    if job_id is not None:
        gone = purge_dead(db, queue, job_id)
        flash(f"purged {job_id}" if gone else f"{job_id} was not a dead letter", "ok")
        return _back(queue)
    if _field("confirm") != "yes":
        abort(400, "purging a whole queue's dead letters needs the confirm box ticked")
    total = purge_all_dead(db, queue, cap=BULK_CAP)
    flash(f"purged {total} dead letters of {queue}", "ok")
    return _back(queue)
