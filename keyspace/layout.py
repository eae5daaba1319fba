"""Every key quick stores: one root, named subspaces, and a decoder back into words.

All keys are ``fdb.tuple``-packed under the root tuple ``("qk",)``, so a quick
keyspace can share a cluster with other data and be cleared or inspected as a
whole. Times are integer milliseconds since the epoch; tags are short strings.
Values are :mod:`keyspace.codec` records unless the table says otherwise; the
fields of every record are in the legend below.

=================================================  ===============================================
key (after the root ``("qk",)``)                   value
=================================================  ===============================================
``("meta", name)``                                 store metadata (e.g. the layout format)
``("meta", "id")``                                 the store's identity: 32 hex digits (ASCII,
                                                   not a record), written once per store and
                                                   namespace by ``quick migrate``, so two
                                                   spellings of one store are known as one
``("ix", vis_ms, queue)``                          empty; pointer index: ``queue`` may have work
                                                   visible from ``vis_ms`` (exactly one per queue)
``("ptr", queue)``                                 pointer record: ``vis_ms``, empty-since time
``("wake",)``                                      little-endian counter, bumped whenever the
                                                   pointer index gains earlier work; idle
                                                   consumers watch it
``("cancels",)``                                   little-endian counter, bumped whenever
                                                   ``quick.cancel`` marks a running job;
                                                   every consumer's lease keeper watches it
``("ql", queue)``                                  queue lease: owner, lease expiry
``("q", queue, "j", job_id)``                      job record: topic, payload, priority, state,
                                                   attempt, lease owner/token/expiry, last error
``("q", queue, "r", priority, vis_ms, job_id)``    empty; ready index (visible jobs, best first)
``("q", queue, "s", vis_ms, job_id)``              empty; scheduled index (future and leased
                                                   jobs, by the time they become visible)
``("q", queue, "n", state)``                       little-endian int64 counter (atomic add)
``("q", queue, "u", unique_key)``                  job id holding the unique key
``("dl", queue, job_id)``                          dead letter: the job record and last error
``("id", job_id)``                                 job directory: queue, and the outcome once
                                                   finished (kept for the retention window)
``("done", done_ms, job_id)``                      empty; finished jobs by time, for purging
``("res", job_id)``                                a finished job's result (what its handler
                                                   returned) or discard reason; written only
                                                   when there is one, cleared with the job's
                                                   tombstone
``("cron", name)``                                 cron schedule: expression, target, next run
``("lim", queue)``                                 queue limits (``queue`` ``"*"``: the default
                                                   of queues without their own): ``mr`` most
                                                   jobs leased at once, ``mps`` most started
                                                   per second (either None = no limit)
``("rate", queue)``                                token bucket of a rate-limited queue: ``tk``
                                                   tokens (float), ``at`` last refill time ms
``("klim", key)``                                  keyed limits shared by every job naming
                                                   ``key`` in its ``lk``: ``mr``, ``mps``
``("krun", key)``                                  little-endian int64 counter: leased jobs
                                                   naming ``key`` (atomic add; cleared at 0)
``("krate", key)``                                 token bucket of a rate-limited key: ``tk``,
                                                   ``at``
``("fin", minute_ms)``                             little-endian int64 counter: jobs finished
                                                   in that minute, every queue (atomic add at
                                                   settlement; the dashboard's chart)
``("fin", minute_ms, queue)``                      the same for the jobs of ``queue``
``("cron_at", next_ms, name)``                     empty; schedules by next run, for activation
``("wf", "run", run_id)``                          workflow run: name, status, queue, input,
                                                   definition, times
``("wf", "step", run_id, step)``                   step state: status, attempts, job, output,
                                                   error, signal
``("wf", "j", run_id, versionstamp)``              journal event of the run, in commit order
``("wf", "mi", run_id, step, index)``              map instance state (a step record): status,
                                                   attempts, job, output, error
``("wf", "idem", workflow, key)``                  run id started with this idempotency key
``("wf", "ix", status, workflow, run_id)``         empty; runs by status, for listing
``("moved", queue)``                               the queue moved to another store: its
                                                   URL (``url``) and when (``at``); enqueues
                                                   here raise QueueMoved
``("mig", queue, job_id)``                         a job being moved in by ``quick migrate``:
                                                   its record, unseen by consumers until the
                                                   source has deleted it
``("migd", queue, job_id)``                        a dead letter being moved in: its stored
                                                   value, unseen until the source deleted it
``("ml", queue)``                                  migration lease: the ``quick migrate`` pass
                                                   moving the queue in or out (owner, expiry);
                                                   held in both stores, one pass at a time
``("b", batch_id)``                                batch: callbacks' queue, whether still open,
                                                   the callback jobs to enqueue
``("bn", batch_id, name)``                         little-endian int64 counter of a batch (atomic
                                                   add): ``total``, ``left`` (members unsettled,
                                                   plus one while open), and one per outcome
``("bm", batch_id, job_id)``                       empty while the member is pending; then a
                                                   record of the state it finished in
``("dep", job_id, dependent_id)``                  empty; ``dependent_id`` waits for ``job_id``
``("hold", job_id)``                               a job waiting for its dependencies: its
                                                   record, queue, dependencies left, mode
``("deb", queue, key)``                            job id of the job debounced under ``key``
``("thr", key, window_ms)``                        the windows of throttle ``key`` (of that
                                                   length) and their counts
=================================================  ===============================================

:func:`describe` turns any stored key into one readable line, for ``quick inspect
keyspace``; keys outside these shapes are shown as their raw tuple or bytes.

Legend of stored records
------------------------
Every record is a msgpack map with short field names. **A name means one thing in
every record that uses it**: ``at`` is always when the record's event happened, ``k``
always a claim's lease token, ``s`` always a job state. Times are integer ms since
the epoch. Nested maps are records too (a job's ``x``, each item of a run's ``df``);
a journal event's ``det``, payloads, inputs and outputs are free-form data with
their own (long) names. :data:`FIELDS` and :data:`RECORDS` are this legend in code, and
``tests/unit/test_legend.py`` checks every record the source writes against them.

Record layout revision 2: every name has one meaning. Revision 1 reused
names (``e``, ``u``, ``k``, ``t``, ``s``, ``r``, ``d``, ``to``, ``m`` ...) with a meaning
per record. The codec's format byte is unchanged (still 1): no store of revision 1
was deployed, so none is migrated (this revision does not read one).

=========  ======================================================  ==========================
name       meaning                                                 records
=========  ======================================================  ==========================
``a``      attempts started so far (a job: leases taken; a step:   job, step
           claims of its jobs)
``af``     keys of the steps this step runs after                  step def
``ak``     token of the activation that last fired the schedule    cron
``at``     when the record's event happened, ms (finished,         directory, dead letter,
           buried, refilled, moved, appended)                      rate, moved, journal
``b``      id of the batch the job is a member of (omitted: none)  job
``cb``     callback jobs by kind (``success``, ``complete``,       batch
           ``failure``), each a callback record
``dn``     true when other jobs wait for this one (omitted:        job
           none do)
``aw``     true once an external step is waiting for its signal    step
``br``     branches of a branch step: name -> the keys of          step def
           the steps it runs
``c``      when created, ms                                        job, run, batch
``cd``     a child step's workflow definition, resolved when       step def
           the parent run started
``ch``     id of the child run that stands for a child step        step
``cr``     cron expression                                         cron
``cw``     name of a child step's workflow                         step def
``cx``     cancel requested while leased (``quick.cancel``;        job
           absent: not)
``dep``    outputs of the step's dependencies, by step key         step job x
``det``    details of a journal event (a map with long,            journal
           self-describing names)
``df``     the workflow definition: a list of step definitions     run
``e``      error text (a job's or step's last error; why a dead    job, result, dead letter,
           letter died; why a job was discarded)                   step
``es``     when the queue became empty, ms (None while it has      pointer
           jobs)
``ev``     kind of a journal event, e.g. ``step_succeeded``        journal
``ex``     when the lease expires, ms                              queue lease, mig lease
``f``      when finished, ms (None until then)                     run, step
``g``      payload of the signal an external step received         step
``gi``     id of the ``signal`` call that delivered ``g`` (a       step
           retried call is a no-op)
``h``      hook kinds the run's workflow had when the run started  run
``i``      the run's input (every step handler's payload)          run
``ik``     idempotency key the run was started with (None: none)   run
``in``     the run's input, carried by a map instance's job        step job x
``j``      id of the job that currently stands for the step        step
``ji``     id chosen for a job enqueued later (a callback)         callback
``jr``     a job's record, encoded (buried, or held back)          dead letter, hold
``lk``     limit keys the job counts against (keyed limits)        job
``lw``     dependencies still to complete                          hold
``k``      lease token of a claim (a job's current lease; the      job, directory
           lease that finished it)
``kd``     step kind: ``task``, ``external``, ``sleep``, ``map``,  step def
           ``branch`` or ``child``
``m``      attempt limit (None: the handler's or default one)      job, step def, step,
                                                                   callback
``mb``     encoded bytes of a map step's instance outputs          step
``md``     instances of a map step that succeeded                  step
``mn``     instances of a map step (None until its list is         step
           known)
``mod``    module owning a job's extension data (see               step job x, hook job x,
           quick.extensions)                                       map job x
``mps``    most jobs started per second (None: no limit)           limits, key limits
``mr``     most jobs leased at once (None: no limit)               limits, key limits
``mx``     index of a map instance (its item in the list); a       step job x, map job x
           map pager's next index
``n``      when next due, ms (a schedule's next tick; a step       cron, step
           job's due or retry time)
``o``      owner: the consumer (or migration pass) holding the     job, queue lease,
           lease                                                   mig lease
``od``     on a dependency's failure: ``discard`` or ``run``       hold
``op``     true while the batch is open to new members             batch
``out``    a step's output                                         step
``ov``     key of the step whose list output a map step maps       step def
``p``      payload                                                 job, cron, callback
``pa``     parent of a child run: ``[run_id, step]``               run
``pg``     progress of a running job: ``[fraction 0..1, text,      job
           when recorded ms]``
``pn``     true when a branch left the step out (skipped;          step
           the run goes on)
``pr``     priority (lower runs first)                             job, step def, callback
``q``      queue id (a child step's: its run's queue)              directory, cron, run,
                                                                   step def, batch,
                                                                   callback, hold
``ra``     claims counted toward the step's attempt limit (a run   step
           retry resets them)
``raw``    the undecodable job record, as stored                   dead letter
``rc``     recent claims, newest first: ``[[token, [job ids]],     queue lease
           ...]``
``ri``     run id                                                  step job x, map job x
``rs``     run status: a RunStatus value                           run
``rt``     id of the ``retry_run`` call last applied (a retried    run
           call is a no-op)
``rv``     what a job's handler returned (its result)              result
``s``      job state: a JobState value (a directory entry's is     job, directory,
           the final one, or ``waiting``)                          member
``sk``     step key                                                step job x, map job x,
                                                                   step def, journal
``sl``     seconds a sleep step sleeps                             step def
``ss``     step status: a StepStatus value                         step
``st``     when the step was first claimed, ms                     step
``t``      topic                                                   job, cron, step def,
                                                                   callback
``tc``     W3C trace context it was made in: ``{"traceparent":     job, run
           ..., "tracestate": ...}`` (omitted: none)
``tk``     tokens left in a rate bucket (float)                    rate
``to``     handler timeout, seconds (None: the handler's own)      step job x, step def
``tz``     time zone of a cron expression                          cron
``u``      unique key (None: none)                                 job
``url``    URL of the store a queue moved to                       moved
``v``      visible from, ms (a leased job: its lease expiry)       job, pointer
``w``      workflow name                                           step job x, map job x,
                                                                   run
``wc``     runs counted per window: ``[[window start ms, count],   throttle
           ...]``
``why``    why it ended, in words (a failed run; a skipped or      run, step
           cancelled step)
``x``      extension data, a map (None: a plain job)               job
``xk``     kind of a workflow job that is no step: ``hook`` or     hook job x, map job x
           ``map`` (a map's pager)
=========  ======================================================  ==========================

===========  ==========================================  ========================================
record       fields                                      stored at
===========  ==========================================  ========================================
job          t p pr v s a m c o k e u x lk tc b dn       ``("q", queue, "j", job_id)``, and
             cx pg                                       ``("mig", queue, job_id)`` while
                                                         migrating
step job x   mod ri sk w dep to mx in                    ``x`` of a workflow step's job
hook job x   mod xk                                      ``x`` of a workflow hook's job
map job x    mod xk ri sk w mx                           ``x`` of a map step's pager job
directory    q s at k                                    ``("id", job_id)``: ``q`` while the job
                                                         lives (and ``s`` ``waiting`` while
                                                         held for dependencies); ``s``,
                                                         ``at``, ``k`` once finished
result       rv e                                        ``("res", job_id)``: ``rv`` of a
                                                         completed job, ``e`` of a discarded
                                                         one
dead letter  jr raw e at                                 ``("dl", queue, job_id)``: ``jr`` or,
                                                         for an undecodable job or one too
                                                         large to wrap, ``raw`` (or, past
                                                         that, the bare job record); and
                                                         ``("migd", queue, job_id)`` while
                                                         migrating
pointer      v es                                        ``("ptr", queue)``
queue lease  o ex rc                                     ``("ql", queue)``
cron         cr tz q t p n ak                            ``("cron", name)``
limits       mr mps                                      ``("lim", queue)``
key limits   mr mps                                      ``("klim", key)``
rate         tk at                                       ``("rate", queue)``,
                                                         ``("krate", key)``
moved        url at                                      ``("moved", queue)``
mig lease    o ex                                        ``("ml", queue)``
run          w rs q i df c f ik h why rt pa tc           ``("wf", "run", run_id)``
step def     sk kd af t m to sl pr ov br cw cd q         each item of a run's ``df``
step         ss a ra m j n st f out e why ch mn md mb    ``("wf", "step", run_id, step)``, and
             g gi aw pn                                  ``("wf", "mi", run_id, step, index)``
                                                         for a map instance
journal      ev at sk det                                ``("wf", "j", run_id, versionstamp)``
batch        q op c cb                                   ``("b", batch_id)``
callback     ji q t p pr m                               each value of a batch's ``cb``
member       s                                           ``("bm", batch_id, job_id)`` once settled
hold         jr q lw od                                  ``("hold", job_id)``
throttle     wc                                          ``("thr", key, window_ms)``
===========  ==========================================  ========================================
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass
from typing import Any

from keyspace.subspace import Subspace
from keyspace.tuples import fdbtuple

__all__ = [
    "ROOT",
    "POINTER_INDEX",
    "POINTERS",
    "QUEUE_LEASES",
    "WAKE",
    "CANCELS",
    "DEAD_LETTERS",
    "JOB_DIRECTORY",
    "FINISHED",
    "RESULTS",
    "CRON",
    "CRON_DUE",
    "LIMITS",
    "RATES",
    "KEY_LIMITS",
    "KEY_RUNNING",
    "KEY_RATES",
    "FINISHED_PER_MINUTE",
    "WF_RUNS",
    "WF_STEPS",
    "WF_JOURNAL",
    "WF_IDEMPOTENCY",
    "WF_BY_STATUS",
    "WF_INSTANCES",
    "MOVED",
    "MIGRATING",
    "MIGRATING_DEAD",
    "MIGRATION_LEASES",
    "STORE_ID",
    "BATCHES",
    "BATCH_COUNTS",
    "BATCH_MEMBERS",
    "DEPENDENTS",
    "HELD",
    "DEBOUNCE",
    "THROTTLE",
    "QueueKeys",
    "queue_keys",
    "Shape",
    "SHAPES",
    "describe",
    "decode",
    "FIELDS",
    "RECORDS",
]

ROOT = Subspace(("qk",))
POINTER_INDEX = ROOT["ix"]
POINTERS = ROOT["ptr"]
QUEUE_LEASES = ROOT["ql"]
WAKE = ROOT.pack(("wake",))
CANCELS = ROOT.pack(("cancels",))
DEAD_LETTERS = ROOT["dl"]
JOB_DIRECTORY = ROOT["id"]
FINISHED = ROOT["done"]
RESULTS = ROOT["res"]
CRON = ROOT["cron"]
CRON_DUE = ROOT["cron_at"]
LIMITS = ROOT["lim"]
RATES = ROOT["rate"]
KEY_LIMITS = ROOT["klim"]
KEY_RUNNING = ROOT["krun"]
KEY_RATES = ROOT["krate"]
FINISHED_PER_MINUTE = ROOT["fin"]
QUEUES = ROOT["q"]
WF_RUNS = ROOT["wf"]["run"]
WF_STEPS = ROOT["wf"]["step"]
WF_JOURNAL = ROOT["wf"]["j"]
WF_IDEMPOTENCY = ROOT["wf"]["idem"]
WF_BY_STATUS = ROOT["wf"]["ix"]
WF_INSTANCES = ROOT["wf"]["mi"]
MOVED = ROOT["moved"]
MIGRATING = ROOT["mig"]
MIGRATING_DEAD = ROOT["migd"]
MIGRATION_LEASES = ROOT["ml"]
STORE_ID = ROOT.pack(("meta", "id"))
BATCHES = ROOT["b"]
BATCH_COUNTS = ROOT["bn"]
BATCH_MEMBERS = ROOT["bm"]
DEPENDENTS = ROOT["dep"]
HELD = ROOT["hold"]
DEBOUNCE = ROOT["deb"]
THROTTLE = ROOT["thr"]

#: Every field name used in a stored record, with its one meaning (the legend above).
FIELDS: dict[str, str] = {
    "a": "attempts started so far (a job: leases taken; a step: claims of its jobs)",
    "af": "keys of the steps this step runs after",
    "ak": "token of the activation that last fired the schedule",
    "at": "when the record's event happened, ms (finished, buried, refilled, moved, appended)",
    "b": "id of the batch the job is a member of (omitted: none)",
    "cb": "callback jobs by kind (``success``, ``complete``, ``failure``), each a callback record",
    "dn": "true when other jobs wait for this one (omitted: none do)",
    "aw": "true once an external step is waiting for its signal",
    "br": "branches of a branch step: name -> the keys of the steps it runs",
    "c": "when created, ms",
    "cd": "a child step's workflow definition, resolved when the parent run started",
    "ch": "id of the child run that stands for a child step",
    "cr": "cron expression",
    "cw": "name of a child step's workflow",
    "dep": "outputs of the step's dependencies, by step key",
    "det": "details of a journal event (a map with long, self-describing names)",
    "df": "the workflow definition: a list of step definitions",
    "e": (
        "error text (a job's or step's last error; why a dead letter died; why a job was discarded)"
    ),
    "es": "when the queue became empty, ms (None while it has jobs)",
    "cx": "cancel requested while leased (``quick.cancel``; absent: not)",
    "ev": "kind of a journal event, e.g. ``step_succeeded``",
    "ex": "when the lease expires, ms",
    "f": "when finished, ms (None until then)",
    "g": "payload of the signal an external step received",
    "gi": "id of the ``signal`` call that delivered ``g`` (a retried call is a no-op)",
    "h": "hook kinds the run's workflow had when the run started",
    "i": "the run's input (every step handler's payload)",
    "ik": "idempotency key the run was started with (None: none)",
    "in": "the run's input, carried by a map instance's job",
    "j": "id of the job that currently stands for the step",
    "ji": "id chosen for a job enqueued later (a callback)",
    "jr": "a job's record, encoded (buried, or held back)",
    "lk": "limit keys the job counts against (keyed limits)",
    "lw": "dependencies still to complete",
    "k": "lease token of a claim (a job's current lease; the lease that finished it)",
    "kd": "step kind: ``task``, ``external``, ``sleep``, ``map``, ``branch`` or ``child``",
    "m": "attempt limit (None: the handler's or default one)",
    "mb": "encoded bytes of a map step's instance outputs",
    "md": "instances of a map step that succeeded",
    "mn": "instances of a map step (None until its list is known)",
    "mod": "module owning a job's extension data (see quick.extensions)",
    "mps": "most jobs started per second (None: no limit)",
    "mr": "most jobs leased at once (None: no limit)",
    "mx": "index of a map instance (its item in the list); a map pager's next index",
    "n": "when next due, ms (a schedule's next tick; a step job's due or retry time)",
    "o": "owner: the consumer (or migration pass) holding the lease",
    "od": "on a dependency's failure: ``discard`` or ``run``",
    "op": "true while the batch is open to new members",
    "out": "a step's output",
    "ov": "key of the step whose list output a map step maps",
    "p": "payload",
    "pa": "parent of a child run: ``[run_id, step]``",
    "pg": "progress of a running job: ``[fraction 0..1, text, when recorded ms]``",
    "pn": "true when a branch left the step out (skipped; the run goes on)",
    "pr": "priority (lower runs first)",
    "q": "queue id (a child step's: its run's queue)",
    "ra": "claims counted toward the step's attempt limit (a run retry resets them)",
    "raw": "the undecodable job record, as stored",
    "rc": "recent claims, newest first: ``[[token, [job ids]], ...]``",
    "ri": "run id",
    "rs": "run status: a RunStatus value",
    "rt": "id of the ``retry_run`` call last applied (a retried call is a no-op)",
    "rv": "what a job's handler returned (its result)",
    "s": "job state: a JobState value (a directory entry's is the final one, or ``waiting``)",
    "sk": "step key",
    "sl": "seconds a sleep step sleeps",
    "ss": "step status: a StepStatus value",
    "st": "when the step was first claimed, ms",
    "t": "topic",
    "tc": 'W3C trace context it was made in: ``{"traceparent": ..., "tracestate": ...}`` '
    "(omitted: none)",
    "tk": "tokens left in a rate bucket (float)",
    "to": "handler timeout, seconds (None: the handler's own)",
    "tz": "time zone of a cron expression",
    "u": "unique key (None: none)",
    "url": "URL of the store a queue moved to",
    "v": "visible from, ms (a leased job: its lease expiry)",
    "w": "workflow name",
    "wc": "runs counted per window: ``[[window start ms, count], ...]``",
    "why": "why it ended, in words (a failed run; a skipped or cancelled step)",
    "x": "extension data, a map (None: a plain job)",
    "xk": "kind of a workflow job that is no step: ``hook`` or ``map`` (a map's pager)",
}

#: The fields of each kind of stored record, in the order written.
RECORDS: dict[str, tuple[str, ...]] = {
    "job": (
        "t",
        "p",
        "pr",
        "v",
        "s",
        "a",
        "m",
        "c",
        "o",
        "k",
        "e",
        "u",
        "x",
        "lk",
        "tc",
        "b",
        "dn",
        "cx",
        "pg",
    ),
    "step job x": ("mod", "ri", "sk", "w", "dep", "to", "mx", "in"),
    "hook job x": ("mod", "xk"),
    "map job x": ("mod", "xk", "ri", "sk", "w", "mx"),
    "directory": ("q", "s", "at", "k"),
    "result": ("rv", "e"),
    "dead letter": ("jr", "raw", "e", "at"),
    "pointer": ("v", "es"),
    "queue lease": ("o", "ex", "rc"),
    "cron": ("cr", "tz", "q", "t", "p", "n", "ak"),
    "limits": ("mr", "mps"),
    "key limits": ("mr", "mps"),
    "rate": ("tk", "at"),
    "moved": ("url", "at"),
    "mig lease": ("o", "ex"),
    "run": ("w", "rs", "q", "i", "df", "c", "f", "ik", "h", "why", "rt", "pa", "tc"),
    "step def": ("sk", "kd", "af", "t", "m", "to", "sl", "pr", "ov", "br", "cw", "cd", "q"),
    "step": (
        *("ss", "a", "ra", "m", "j", "n", "st", "f", "out", "e", "why"),
        *("ch", "mn", "md", "mb", "g", "gi", "aw", "pn"),
    ),
    "journal": ("ev", "at", "sk", "det"),
    "batch": ("q", "op", "c", "cb"),
    "callback": ("ji", "q", "t", "p", "pr", "m"),
    "member": ("s",),
    "hold": ("jr", "q", "lw", "od"),
    "throttle": ("wc",),
}


class QueueKeys:
    """The keys of one queue's range: its jobs, indexes, counters and unique keys.

    Build them with :func:`queue_keys`, which caches one per queue name.
    """

    __slots__ = (
        "queue",
        "space",
        "_jobs",
        "_ready",
        "_sched",
        "_counters",
        "_unique",
        "_ready_range",
        "_sched_range",
    )

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.space = space = QUEUES[queue]
        raw = space.raw
        # The tags packed once (_TAGS), not per queue: a store of many one-job queues
        # makes these for nearly every job it runs.
        self._jobs = Subspace.packed(("j",), raw + _TAGS["j"])
        self._ready = ready = Subspace.packed(("r",), raw + _TAGS["r"])
        self._sched = sched = Subspace.packed(("s",), raw + _TAGS["s"])
        self._counters = Subspace.packed(("n",), raw + _TAGS["n"])
        self._unique = Subspace.packed(("u",), raw + _TAGS["u"])
        # Both index ranges, as Subspace.range() makes them: a claim of a one-job queue
        # asks for them several times.
        self._ready_range = (ready.raw + b"\x00", ready.raw + b"\xff")
        self._sched_range = (sched.raw + b"\x00", sched.raw + b"\xff")

    def job(self, job_id: str) -> bytes:
        return self._jobs.pack((job_id,))

    def ready(self, priority: int, vis_ms: int, job_id: str) -> bytes:
        return self._ready.pack((priority, vis_ms, job_id))

    def ready_range(self) -> tuple[bytes, bytes]:
        return self._ready_range

    def unpack_ready(self, key: bytes) -> tuple[int, int, str]:
        priority, vis_ms, job_id = self._ready.unpack(key)
        return priority, vis_ms, job_id

    def scheduled(self, vis_ms: int, job_id: str) -> bytes:
        return self._sched.pack((vis_ms, job_id))

    def scheduled_range(self, until_ms: int | None = None) -> tuple[bytes, bytes]:
        """Scheduled entries, or only those visible at or before ``until_ms``."""
        if until_ms is None:
            return self._sched_range
        return self._sched_range[0], self._sched.pack((until_ms + 1,))

    def unpack_scheduled(self, key: bytes) -> tuple[int, str]:
        vis_ms, job_id = self._sched.unpack(key)
        return vis_ms, job_id

    def counter(self, state: str) -> bytes:
        return self._counters.raw + _STATE_TAGS[state]

    def counters_range(self) -> tuple[bytes, bytes]:
        return self._counters.range()

    def unique(self, unique_key: str) -> bytes:
        return self._unique.pack((unique_key,))


class _PackedTags(dict[str, bytes]):
    """Tags (and counted state names) packed once, on first use."""

    def __missing__(self, tag: str) -> bytes:
        packed = self[tag] = Subspace((tag,)).raw
        return packed


_TAGS = _PackedTags()
_STATE_TAGS = _PackedTags()


@functools.lru_cache(maxsize=4096)
def queue_keys(queue: str) -> QueueKeys:
    """The (cached) keys of ``queue``."""
    return QueueKeys(queue)


@dataclass(frozen=True, slots=True)
class Shape:
    """One key shape: literal tags and named fields, e.g. ``q/{queue}/j/{job_id}``."""

    pattern: str
    meaning: str

    @property
    def parts(self) -> list[str]:
        return list(_parts(self.pattern))

    def match(self, items: tuple[Any, ...]) -> dict[str, Any] | None:
        parts = _parts(self.pattern)
        if len(parts) != len(items):
            return None
        fields: dict[str, Any] = {}
        for part, item in zip(parts, items, strict=True):
            if part.startswith("{"):
                fields[part[1:-1]] = item
            elif part != item:
                return None
        return fields


SHAPES: tuple[Shape, ...] = (
    Shape("meta/id", "store identity"),
    Shape("meta/{name}", "store metadata"),
    Shape("ix/{vis_ms}/{queue}", "pointer index entry"),
    Shape("ptr/{queue}", "queue pointer"),
    Shape("ql/{queue}", "queue lease"),
    Shape("wake", "wake-up counter"),
    Shape("cancels", "running-job cancel counter"),
    Shape("q/{queue}/j/{job_id}", "job"),
    Shape("q/{queue}/r/{priority}/{vis_ms}/{job_id}", "ready job"),
    Shape("q/{queue}/s/{vis_ms}/{job_id}", "scheduled or leased job"),
    Shape("q/{queue}/n/{state}", "queue counter"),
    Shape("q/{queue}/u/{unique_key}", "unique key reservation"),
    Shape("dl/{queue}/{job_id}", "dead letter"),
    Shape("id/{job_id}", "job directory"),
    Shape("done/{done_ms}/{job_id}", "finished job"),
    Shape("res/{job_id}", "job result"),
    Shape("cron/{name}", "cron schedule"),
    Shape("cron_at/{next_ms}/{name}", "cron schedule due"),
    Shape("lim/{queue}", "queue limits"),
    Shape("rate/{queue}", "queue rate bucket"),
    Shape("klim/{key}", "key limits"),
    Shape("krun/{key}", "key running counter"),
    Shape("krate/{key}", "key rate bucket"),
    Shape("fin/{minute_ms}", "jobs finished per minute"),
    Shape("fin/{minute_ms}/{queue}", "jobs of a queue finished per minute"),
    Shape("wf/run/{run_id}", "workflow run"),
    Shape("wf/step/{run_id}/{step}", "workflow step"),
    Shape("wf/mi/{run_id}/{step}/{index}", "workflow map instance"),
    Shape("wf/j/{run_id}/{versionstamp}", "workflow journal event"),
    Shape("wf/idem/{workflow}/{key}", "workflow idempotency key"),
    Shape("wf/ix/{status}/{workflow}/{run_id}", "workflow run by status"),
    Shape("moved/{queue}", "queue moved away"),
    Shape("mig/{queue}/{job_id}", "job being migrated in"),
    Shape("migd/{queue}/{job_id}", "dead letter being migrated in"),
    Shape("ml/{queue}", "migration lease"),
    Shape("b/{batch_id}", "batch"),
    Shape("bn/{batch_id}/{name}", "batch counter"),
    Shape("bm/{batch_id}/{job_id}", "batch member"),
    Shape("dep/{job_id}/{dependent_id}", "dependent job"),
    Shape("hold/{job_id}", "job waiting for dependencies"),
    Shape("deb/{queue}/{key}", "debounce key"),
    Shape("thr/{key}/{window_ms}", "throttle windows"),
)


@functools.cache
def _parts(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("/"))


#: The shapes by (first tag, number of parts), in :data:`SHAPES` order: a deep check
#: decodes every key of the store, and most shapes cannot match a given key.
def _by_head() -> dict[tuple[str, int], tuple[Shape, ...]]:
    found: dict[tuple[str, int], tuple[Shape, ...]] = {}
    for shape in SHAPES:
        parts = _parts(shape.pattern)
        found[parts[0], len(parts)] = (*found.get((parts[0], len(parts)), ()), shape)
    return found


_BY_HEAD = _by_head()


def decode(key: bytes) -> tuple[Shape | None, tuple[Any, ...] | None, dict[str, Any]]:
    """(shape, tuple after the root, fields) for ``key``; Nones where it does not parse."""
    if not ROOT.contains(key):
        return None, None, {}
    try:
        items = ROOT.unpack(key)
    except ValueError:
        return None, None, {}
    head = items[0] if items and isinstance(items[0], str) else None
    for shape in _BY_HEAD.get((head, len(items)), ()) if head is not None else ():
        fields = shape.match(items)
        if fields is not None:
            return shape, items, fields
    return None, items, {}


def _show(name: str, value: Any) -> str:
    if name.endswith("_ms") and isinstance(value, int):
        when = _dt.datetime.fromtimestamp(value / 1000, tz=_dt.UTC)
        return f"{name}={value} ({when.isoformat(timespec='milliseconds')})"
    return f"{name}={value!r}"


def describe(key: bytes) -> str:
    """One line saying what ``key`` is, e.g. ``job  queue='t1' job_id='...'``."""
    shape, items, fields = decode(key)
    if shape is not None:
        return "  ".join([shape.meaning] + [_show(k, v) for k, v in fields.items()])
    if items is not None:
        return f"unknown quick key {items!r}"
    try:
        return f"foreign key {tuple(fdbtuple.unpack(key))!r}"
    except Exception:
        return f"foreign key {key!r}"
