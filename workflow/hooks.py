"""Hooks: functions called after a workflow's steps and runs finish, at least once.

A hook is not called from the transaction that records the fact (that may retry, or
commit and then lose its process). Instead that transaction enqueues a small hook job
on the run's queue, and a consumer calls the registered functions when it runs the
job: after the commit, and again if the consumer dies first. Hooks are registered per
workflow name in each process (``Workflow(...).on_run_finished(fn)``), normally by the
app module the workers import; a hook job meeting a process without the hook fails
and is retried, so every worker should import the workflow definitions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HookEvent",
    "STEP_SUCCEEDED",
    "STEP_FAILED",
    "RUN_FINISHED",
    "KINDS",
    "register",
    "registered",
    "kinds_for",
]

STEP_SUCCEEDED = "step_succeeded"
STEP_FAILED = "step_failed"
RUN_FINISHED = "run_finished"
KINDS = (STEP_SUCCEEDED, STEP_FAILED, RUN_FINISHED)


@dataclass(frozen=True, slots=True, kw_only=True)
class HookEvent:
    """What a hook is told: which run, which step (None for run events), how it ended."""

    kind: str
    workflow: str
    run_id: str
    status: str
    step: str | None = None
    output: Any = None
    error: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "workflow": self.workflow,
            "run_id": self.run_id,
            "status": self.status,
            "step": self.step,
            "output": self.output,
            "error": self.error,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> HookEvent:
        return cls(
            kind=payload["kind"],
            workflow=payload["workflow"],
            run_id=payload["run_id"],
            status=payload["status"],
            step=payload.get("step"),
            output=payload.get("output"),
            error=payload.get("error"),
        )


_hooks: dict[tuple[str, str], list[Callable[[HookEvent], Any]]] = {}
_lock = threading.Lock()


def register(workflow: str, kind: str, fn: Callable[[HookEvent], Any]) -> None:
    """Call ``fn`` for ``kind`` events of ``workflow`` in this process."""
    if kind not in KINDS:
        raise ValueError(f"hook kind must be one of {KINDS}, not {kind!r}")
    if not callable(fn):
        raise TypeError(f"a hook must be callable, not {fn!r}")
    with _lock:
        _hooks.setdefault((workflow, kind), []).append(fn)


def registered(workflow: str, kind: str) -> list[Callable[[HookEvent], Any]]:
    """The hooks registered in this process for ``kind`` events of ``workflow``."""
    with _lock:
        return list(_hooks.get((workflow, kind), ()))


def kinds_for(workflow: str) -> list[str]:
    """The kinds of event that have hooks for ``workflow`` here (stored with each run)."""
    with _lock:
        return [kind for kind in KINDS if _hooks.get((workflow, kind))]


def run_hooks(payload: Mapping[str, Any]) -> None:
    """Call every hook registered for the event in ``payload`` (a hook job's body).

    Raises:
        LookupError: no hook for this event is registered in this process (retried).
    """
    event = HookEvent.from_payload(payload)
    functions = registered(event.workflow, event.kind)
    if not functions:
        raise LookupError(
            f"no {event.kind} hook for workflow {event.workflow!r} is registered in this "
            "process; import the module that defines it in the worker's app"
        )
    for fn in functions:
        fn(event)
