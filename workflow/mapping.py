"""Map steps: one task instance per item of a predecessor's list output.

Theory of operation
-------------------
* When a map step becomes runnable, its ``over`` step's output is checked (a list of at
  most :data:`~workflow.definition.MAP_LIMIT` items, each instance's job within a value's
  limit), the step records its ``count`` and runs, and the first page of instances is
  scheduled in the same transaction. An empty list succeeds at once; anything else wrong
  fails the step, naming why.
* Instances live at ``("wf", "mi", run, step, index)`` (step records of their own, so an
  instance is fenced, retried and timed out exactly as a task step is). Their items
  carry their index and the run's input; the payload is the item.
* Pages: no transaction touches more than :data:`PAGE` instances (nor more than
  :data:`PAGE_BYTES` of their jobs). Whatever one page leaves is done by a *pager*: a
  built-in queue item whose settlement does the next page and enqueues the one after.
  A page reconciles its instances with the run as it is when the page runs: a running
  run schedules those not scheduled (or failed before a ``retry_run``), a paused one
  withdraws queued ones (held), an ended one withdraws them for good. So pause, resume,
  cancel and a failed run each just start a pager at index 0; pagers that overlap do
  the same work twice, never different work.
* Completion: each instance's success adds to the map step's ``done`` count in the same
  transaction (instances of one map contend there, and only there); the one that makes
  it ``count`` succeeds the map. When the outputs together are small
  (:data:`INLINE_BYTES`) the map's output is their list; otherwise it is a reference
  that handlers read in pages (:class:`MapOutputs`, :func:`map_outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyspace.codec import pack_value
from keyspace.limits import VALUE_LIMIT
from keyspace.protocol import Database, ReadView, Transaction
from quick.enqueueing import prepare, store_new
from quick.retrying import attempt_limit
from workflow import journal as events
from workflow.definition import MAP_LIMIT, StepKind
from workflow.engine import STARTS, WITHDRAWS, Run, fail_run, succeed
from workflow.items import MAP_ITEM, MAP_TOPIC, StepItem
from workflow.records import TERMINAL_RUN, RunStatus, StepRecord, StepStatus, read_instances

__all__ = [
    "PAGE",
    "PAGE_BYTES",
    "INLINE_BYTES",
    "MapOutputs",
    "map_outputs",
    "start_map",
    "enqueue_pager",
    "page",
    "instance_succeeded",
    "instance_failed",
]

#: Instances one transaction schedules or withdraws: a few hundred small writes each,
#: far inside FoundationDB's 10 MB and 5 s.
PAGE = 200
#: Bytes of instance jobs one transaction writes at most (FoundationDB advises keeping
#: transactions under 1 MB; each job carries its item and a copy of the run's input).
PAGE_BYTES = 1_000_000
#: Outputs that together encode to at most this travel inline as a list to the steps
#: after the map (a step item carries its dependencies' outputs within a value's limit).
INLINE_BYTES = VALUE_LIMIT // 4
#: The key of the reference a map step outputs when its outputs are too large to inline.
REFERENCE = "map_outputs"


@dataclass(frozen=True, slots=True, kw_only=True)
class MapOutputs:
    """The outputs of a map step too large to travel inline: ``read`` them in pages."""

    run_id: str
    step: str
    count: int

    def read(self, db: Database | Transaction, start: int = 0, limit: int = 0) -> list[Any]:
        """The outputs from index ``start`` (``limit`` 0: to the end), in item order."""
        return map_outputs(db, self.run_id, self.step, start=start, limit=limit)

    def __len__(self) -> int:
        return self.count


def reference(run_id: str, step: str, count: int) -> dict[str, Any]:
    """The stored form of a :class:`MapOutputs` (a map step's output)."""
    return {REFERENCE: [run_id, step, count]}


def as_outputs(value: Any) -> Any:
    """``value``, or the :class:`MapOutputs` it refers to."""
    if isinstance(value, dict) and len(value) == 1 and REFERENCE in value:
        ref = value[REFERENCE]
        if isinstance(ref, list) and len(ref) == 3:
            return MapOutputs(run_id=str(ref[0]), step=str(ref[1]), count=int(ref[2]))
    return value


def map_outputs(
    db: Database | Transaction, run_id: str, step: str, *, start: int = 0, limit: int = 0
) -> list[Any]:
    """The outputs of map step ``step`` of run ``run_id`` from ``start``, in item order.

    Given a database, each page of :data:`PAGE` instances is read in its own
    transaction (a finished map does not change); given a transaction, all in it.
    """
    out: list[Any] = []
    index = start
    while limit == 0 or len(out) < limit:
        wanted = PAGE if limit == 0 else min(PAGE, limit - len(out))

        def body(view: ReadView, at: int = index, n: int = wanted) -> list[StepRecord]:
            return read_instances(view, run_id, step, at, stop=at + n)

        if isinstance(db, Transaction):
            rows = body(db.snapshot)
        else:
            rows = db.transact(lambda tr: body(tr.snapshot))
        out += [row.output for row in rows]
        if len(rows) < wanted:
            break
        index += wanted
    return out


def start_map(run: Run, step: StepRecord) -> None:
    """Expand map step ``step`` over its ``over`` step's output (see the module doc)."""
    spec = run.definition.steps[step.key]
    assert spec.over is not None
    items = run.step(spec.over).output
    if not isinstance(items, list):
        kind = type(items).__name__
        fail_run(run, step, f"map over step {spec.over!r}: its output is a {kind}, not a list")
        return
    if len(items) > MAP_LIMIT:
        fail_run(
            run,
            step,
            f"map over step {spec.over!r}: {len(items)} items; a map runs at most {MAP_LIMIT}",
        )
        return
    largest = max((len(pack_value(item)) for item in items), default=0)
    job_bytes = largest + len(pack_value(run.record.input))
    if job_bytes > VALUE_LIMIT // 2:
        fail_run(
            run,
            step,
            f"map over step {spec.over!r}: an instance's item and the run's input encode to "
            f"{job_bytes} bytes; the limit is {VALUE_LIMIT // 2}",
        )
        return
    step = step.evolve(status=StepStatus.RUNNING, count=len(items), started_ms=run.now)
    run.save(step)
    run.journal.append(events.MAP_EXPANDED, step.key, count=len(items))
    if not items:
        succeed(run, step, [])
        return
    page(run, step.key, 0)


def enqueue_pager(run: Run, key: str, start: int) -> None:
    """Enqueue the item whose settlement does the page of map ``key`` from ``start``."""
    item = StepItem(run_id=run.id, step=key, workflow=run.record.workflow).to_record()
    item.update(xk=MAP_ITEM, mx=start)
    job = prepare(run.record.queue, MAP_TOPIC, None, now=run.now, extension=item)
    store_new(run.tr, job, first_try=True)  # a fresh id in every try: nothing can hold it


def page(run: Run, key: str, start: int) -> None:
    """Reconcile instances of map ``key`` from ``start`` with the run (see the module
    doc), at most one page of them; enqueue a pager for the rest."""
    step = run.step(key)
    if step.count is None:
        return
    spec = run.definition.steps[key]
    stop = min(step.count, start + PAGE)
    stored = {row.index: row for row in read_instances(run.tr, run.id, key, start, stop=stop)}
    running = run.status is RunStatus.RUNNING and step.status == StepStatus.RUNNING
    items: list[Any] = []
    if running:
        assert spec.over is not None
        items = run.step(spec.over).output
    written = 0
    index = start
    while index < stop and written < PAGE_BYTES:
        instance = stored.get(index) or StepRecord(run_id=run.id, key=key, index=index)
        if running:
            if instance.status not in (
                StepStatus.SUCCEEDED,
                StepStatus.SCHEDULED,
                StepStatus.RUNNING,
            ):
                written += _schedule(run, instance, items[index])
        elif instance.status == StepStatus.SCHEDULED:
            _withdraw(run, instance)
        index += 1
    if index < step.count:
        enqueue_pager(run, key, index)


def _schedule(run: Run, instance: StepRecord, item: Any) -> int:
    """Enqueue the instance's job; the bytes it writes."""
    spec = run.definition.steps[instance.key]
    assert spec.topic is not None
    assert instance.index is not None
    attempts = spec.max_attempts
    counted = instance.counted
    if instance.status == StepStatus.FAILED:
        counted = 0  # a run retry starts a failed instance's count again
    elif counted:
        limit = attempt_limit(instance.max_attempts, attempts)
        attempts = max(1, limit - counted)
    extension = StepItem(
        run_id=run.id,
        step=instance.key,
        workflow=run.record.workflow,
        results={},
        timeout=spec.timeout,
        index=instance.index,
        input=run.record.input,
    ).to_record()
    job = prepare(
        run.record.queue,
        spec.topic,
        item,
        priority=spec.priority,
        max_attempts=attempts,
        now=run.now,
        extension=extension,
    )
    job_id = store_new(run.tr, job, first_try=True)
    run.save(
        instance.evolve(
            status=StepStatus.SCHEDULED, job_id=job_id, due_ms=run.now, counted=counted, error=None
        )
    )
    return len(job.value)


def _withdraw(run: Run, instance: StepRecord) -> None:
    """Take a queued instance's job back: held while paused, ended once the run or map has."""
    from quick.errors import JobRunning
    from quick.operations import cancel as cancel_job

    if instance.job_id is not None:
        try:
            cancel_job(run.tr, instance.job_id)
        except JobRunning:
            return  # it runs; its settlement is fenced
    if run.status is RunStatus.PAUSED and run.step(instance.key).status == StepStatus.RUNNING:
        run.save(instance.evolve(status=StepStatus.WAITING, job_id=None))
        return
    ended = StepStatus.CANCELLED if run.status is RunStatus.CANCELLED else StepStatus.SKIPPED
    run.save(instance.evolve(status=ended, job_id=None, reason="the map step ended"))


def instance_succeeded(run: Run, instance: StepRecord, output: Any) -> None:
    """Record an instance's output; the last one succeeds the map step."""
    run.save(instance.evolve(status=StepStatus.SUCCEEDED, output=output, finished_ms=run.now))
    step = run.step(instance.key)
    step = step.evolve(done=step.done + 1, out_bytes=step.out_bytes + len(pack_value(output)))
    run.save(step)
    if step.count is None or step.done < step.count or step.status != StepStatus.RUNNING:
        return
    if step.out_bytes <= INLINE_BYTES:
        value: Any = map_outputs(run.tr, run.id, step.key)
    else:
        value = reference(run.id, step.key, step.count)
    succeed(run, step, value)


def instance_failed(run: Run, instance: StepRecord, error: str) -> None:
    """An instance out of attempts: it fails, and so does its map step (and the run)."""
    run.save(instance.evolve(status=StepStatus.FAILED, error=error, finished_ms=run.now))
    run.journal.append(events.INSTANCE_FAILED, instance.key, index=instance.index, error=error)
    if run.status not in TERMINAL_RUN:
        fail_run(run, run.step(instance.key), f"instance {instance.index} failed: {error}")


def _withdraw_map(run: Run, step: StepRecord) -> bool:
    """A map's instances, when its run pauses or ends: the first page now, a pager for
    the rest (each page does what the run's status then says)."""
    if step.count is not None:
        page(run, step.key, 0)
    return True


STARTS[StepKind.MAP] = start_map
WITHDRAWS[StepKind.MAP] = _withdraw_map
