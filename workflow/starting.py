"""Starting workflow runs: validate, store the run record and schedule the root steps."""

from __future__ import annotations

from typing import Any

from keyspace.layout import WF_BY_STATUS, WF_IDEMPOTENCY, WF_RUNS
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, Transaction
from keyspace.retry import transactional
from quick.errors import InvalidArgument
from quick.jobs import now_ms
from quick.tracecontext import current_trace
from quick.validation import check_name
from workflow import hooks
from workflow import journal as events
from workflow.definition import Workflow
from workflow.engine import Run, check_storable, new_id, schedule_ready
from workflow.records import RunRecord, RunStatus, write_run

__all__ = ["start_run"]


def start_run(
    db_or_tr: Database | Transaction,
    wf: Workflow,
    input: Any,  # noqa: A002 - the public name of the run's input
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
    record = RunRecord(
        id=new_id(),
        workflow=wf.name,
        status=RunStatus.RUNNING,
        queue=queue_id,
        input=input,
        definition=definition.to_record(),
        created_ms=0,
        idempotency_key=idempotency_key,
        hooks=tuple(hooks.kinds_for(wf.name)),
        trace=current_trace(),
    )
    size = len(record.to_value())
    if size > VALUE_LIMIT:
        raise InvalidArgument(
            "input", f"the run record would be {size} bytes; the limit is {VALUE_LIMIT}"
        )
    return _start(db_or_tr, record)


@transactional
def _start(tr: Transaction, record: RunRecord) -> str:
    run_id = record.id
    if record.idempotency_key is not None:
        idempotency = WF_IDEMPOTENCY.pack((record.workflow, record.idempotency_key))
        claimed = tr.get(idempotency)
        if claimed is not None:
            return claimed.decode()
        tr.set(idempotency, run_id.encode())
    if tr.get(WF_RUNS.pack((run_id,))) is not None:
        return run_id  # an earlier try of this start committed
    now = now_ms()
    record = record.evolve(created_ms=now)
    write_run(tr, record)
    tr.set(WF_BY_STATUS.pack((record.status.value, record.workflow, run_id)), b"")
    run = Run(tr, run_id, now, record)
    run.journal.append(events.RUN_STARTED, queue_id=record.queue)
    schedule_ready(run, run.definition.roots)
    return run_id
