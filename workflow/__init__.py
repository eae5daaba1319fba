"""Workflows: DAGs of steps on leased queue items, with a durable journal and signals.

Define a workflow with :class:`Workflow` (task, external, sleep, map, branch and child
steps), start runs with :func:`start_run` (it joins the caller's transaction), await
one with :func:`result`, and let ordinary consumers run the steps: each runnable
step is a queue item whose completion, output, journal event and successors commit
in one transaction. Read runs with :func:`inspect_run`, :func:`explain_run` and
:func:`list_runs`; steer them with :func:`signal`, :func:`cancel_run`,
:func:`pause_run`, :func:`resume_run` and :func:`retry_run`.
"""

from workflow.definition import MAP_LIMIT, StepKind, StepSpec, Workflow, register
from workflow.errors import (
    BlankStepKey,
    ChildCycle,
    CorruptRun,
    CycleError,
    DefinitionError,
    DuplicateStep,
    InvalidRunState,
    InvalidSignal,
    InvalidStepOption,
    ResultTimeout,
    RunFailed,
    RunNotFound,
    UnknownDependency,
    UnknownTopic,
    UnknownWorkflow,
    WorkflowError,
)
from workflow.hooks import HookEvent
from workflow.journal import Event
from workflow.mapping import MapOutputs, map_outputs
from workflow.records import RunStatus, StepStatus
from workflow.results import result
from workflow.starting import start_run
from workflow.steering import cancel_run, pause_run, resume_run, retry_run, signal
from workflow.steps import StepContext
from workflow.views import (
    Explanation,
    InstanceView,
    RunSummary,
    RunView,
    StepView,
    explain_run,
    inspect_instances,
    inspect_run,
    list_runs,
)


def __getattr__(name: str) -> object:
    """``workflow.aio``, imported on first use: ``import workflow`` stays free of anyio."""
    if name == "aio":
        import importlib

        return importlib.import_module("workflow.aio")
    raise AttributeError(f"module 'workflow' has no attribute {name!r}")


__all__ = [
    "MAP_LIMIT",
    "BlankStepKey",
    "ChildCycle",
    "CorruptRun",
    "CycleError",
    "DefinitionError",
    "DuplicateStep",
    "Event",
    "Explanation",
    "HookEvent",
    "InstanceView",
    "InvalidRunState",
    "InvalidSignal",
    "InvalidStepOption",
    "MapOutputs",
    "ResultTimeout",
    "RunFailed",
    "RunNotFound",
    "RunStatus",
    "RunSummary",
    "RunView",
    "StepContext",
    "StepKind",
    "StepSpec",
    "StepStatus",
    "StepView",
    "UnknownDependency",
    "UnknownTopic",
    "UnknownWorkflow",
    "Workflow",
    "WorkflowError",
    "aio",
    "cancel_run",
    "explain_run",
    "inspect_instances",
    "inspect_run",
    "list_runs",
    "map_outputs",
    "pause_run",
    "register",
    "result",
    "resume_run",
    "retry_run",
    "signal",
    "start_run",
]
