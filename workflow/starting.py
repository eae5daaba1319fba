"""Starting workflow runs: validate, store the run record and schedule the root steps."""

from __future__ import annotations

from typing import Any

from keyspace.codec import pack_value
from keyspace.layout import WF_BY_STATUS, WF_IDEMPOTENCY, WF_RUNS
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick.errors import InvalidArgument
from quick.jobs import now_ms
from quick.validation import check_name
from workflow import hooks
from workflow import journal as events
from workflow.definition import Workflow
from workflow.engine import Run, check_storable, new_id, schedule_ready
from workflow.records import RunStatus, write_run

__all__ = ["start_run"]


def start_run(
    db_or_tr: Database | Transaction,
    wf: Workflow,
    input: Any,  # noqa: A002 - the issue fixes this public name
    *,
    queue_id: str,
    idempotency_key: str | None = None,
    app: Any = None,
) -> str:
    """Start a run of ``wf`` on queue ``queue_id``; return its run id.

    Joins the caller's transaction when given one. A second start with the same
    (workflow name, ``idempotency_key``) returns the first run's id and writes nothing.

    Args:
        db_or_tr: a database, or the caller's transaction to join.
        wf: the workflow; its definition is validated and stored with the run.
        input: the run's input (msgpack-encodable), every step handler's payload.
        queue_id: the queue (tenant) the run's steps are enqueued on.
        idempotency_key: dedupes starts per workflow name.
        app: when given, every step topic must have a handler in it.

    Raises:
        DefinitionError: the definition is invalid (the subclass says how).
        InvalidArgument / InvalidPayload: a bad queue id, key, or input.
    """
    definition = wf.validate(app)
    check_name("queue_id", queue_id)
    check_name("idempotency_key", idempotency_key, optional=True)
    check_storable("input", input)
    record = {
        "w": wf.name,
        "rs": RunStatus.RUNNING.value,
        "q": queue_id,
        "i": input,
        "df": definition.to_record(),
        "c": 0,
        "f": None,
        "ik": idempotency_key,
        "h": hooks.kinds_for(wf.name),
    }
    size = len(pack_value(record))
    if size > VALUE_LIMIT:
        raise InvalidArgument(
            "input", f"the run record would be {size} bytes; the limit is {VALUE_LIMIT}"
        )
    return _start(db_or_tr, new_id(), record)


@transactional
def _start(tr: Transaction, run_id: str, record: dict[str, Any]) -> str:
    if record["ik"] is not None:
        claimed = tr.get(WF_IDEMPOTENCY.pack((record["w"], record["ik"])))
        if claimed is not None:
            return claimed.decode()
        tr.set(WF_IDEMPOTENCY.pack((record["w"], record["ik"])), run_id.encode())
    if tr.get(WF_RUNS.pack((run_id,))) is not None:
        return run_id  # an earlier try of this start committed
    now = now_ms()
    record = dict(record, c=now)
    write_run(tr, run_id, record)
    tr.set(WF_BY_STATUS.pack((record["rs"], record["w"], run_id)), b"")
    run = Run(tr, run_id, now, record)
    run.journal.append(events.RUN_STARTED, queue_id=record["q"])
    schedule_ready(run, run.definition.roots)
    return run_id
