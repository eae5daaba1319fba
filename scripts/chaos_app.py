"""The App that ``scripts/chaos.py`` runs under ``quick worker``: ``--app chaos_app:app``.

* ``ledger``: transactional; adds 1 to the app counter ``chaos/fx/<job_id>`` in the
  transaction that completes the job, so the store shows whether an effect was applied
  twice. A job whose payload says ``flaky`` fails its first attempt, then succeeds.
* ``doomed``: always fails; enqueued with ``max_attempts=2``, so it ends dead-lettered.
* ``step``: the steps of :data:`FLOW`, a four-step diamond; each returns one more than
  the sum of its dependencies' outputs, so the last one's output is :data:`FINAL`.
"""

from __future__ import annotations

import struct
from typing import Any

import quick
from keyspace.protocol import Transaction
from workflow import StepContext, Workflow

__all__ = ["EFFECTS", "FINAL", "FLOW", "app", "effect_key"]

app = quick.App()

#: Where the app's counters live: outside quick's root, as an application's data would.
EFFECTS = b"chaos/fx/"
_ONE = struct.pack("<q", 1)

#: a -> b, c -> d.
FLOW = (
    Workflow("chaos-diamond")
    .step("a", topic="step")
    .step("b", topic="step", after="a")
    .step("c", topic="step", after="a")
    .step("d", topic="step", after=["b", "c"])
)
#: a = 1, b = c = 2, d = 5.
FINAL = 5


def effect_key(job_id: str) -> bytes:
    """The app counter of one ledger job."""
    return EFFECTS + job_id.encode()


@app.job("ledger", max_attempts=10, backoff=(0.05, 0.5))
def ledger(tr: Transaction, payload: Any, meta: quick.Meta) -> None:
    """Add 1 to the job's counter; a flaky job's first attempt fails first."""
    if isinstance(payload, dict) and payload.get("flaky") and meta.attempt == 1:
        raise RuntimeError("flaky: first attempt fails")
    tr.add(effect_key(meta.job_id), _ONE)


@app.job("doomed", backoff=(0.05, 0.5))
def doomed(payload: Any, meta: quick.Meta) -> None:
    """Fail every attempt: the job must end as a dead letter."""
    raise RuntimeError("doomed: always fails")


@app.job("step")
def step(payload: Any, meta: quick.Meta) -> int:
    """One more than the sum of the dependencies' outputs."""
    context = meta.context
    assert isinstance(context, StepContext)
    return 1 + sum(int(value) for value in context.results.values())
