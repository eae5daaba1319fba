"""The workflow error family: every error names what was wrong in structured fields.

Definition errors are raised while a :class:`workflow.Workflow` is built or validated,
and start errors by :func:`workflow.start_run`, always before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from keyspace.errors import QuickError

__all__ = [
    "WorkflowError",
    "DefinitionError",
    "BlankStepKey",
    "DuplicateStep",
    "UnknownDependency",
    "CycleError",
    "InvalidStepOption",
    "UnknownTopic",
    "UnknownWorkflow",
    "ChildCycle",
    "RunNotFound",
    "RunFailed",
    "ResultTimeout",
    "CorruptRun",
    "InvalidRunState",
    "InvalidSignal",
]


class WorkflowError(QuickError):
    """Root of the workflow errors."""


class DefinitionError(WorkflowError, ValueError):
    """A workflow definition is invalid; ``workflow`` names it."""

    def __init__(self, workflow: str, message: str) -> None:
        super().__init__(f"workflow {workflow!r}: {message}")
        self.workflow = workflow


class BlankStepKey(DefinitionError):
    """A step key is empty, blank, or not a string."""

    def __init__(self, workflow: str, key: object) -> None:
        super().__init__(workflow, f"step keys must be non-blank strings, not {key!r}")
        self.key = key


class DuplicateStep(DefinitionError):
    """Two steps share a key."""

    def __init__(self, workflow: str, step: str) -> None:
        super().__init__(workflow, f"step {step!r} is defined twice")
        self.step = step


class UnknownDependency(DefinitionError):
    """A step runs ``after`` a step the workflow does not define."""

    def __init__(self, workflow: str, step: str, dependency: str) -> None:
        super().__init__(workflow, f"step {step!r} runs after unknown step {dependency!r}")
        self.step = step
        self.dependency = dependency


class CycleError(DefinitionError):
    """The steps' dependencies form a cycle; ``steps`` lists it in order."""

    def __init__(self, workflow: str, steps: Sequence[str]) -> None:
        path = " -> ".join([*steps, steps[0]])
        super().__init__(workflow, f"steps form a cycle: {path}")
        self.steps = list(steps)


class InvalidStepOption(DefinitionError):
    """A step option is out of range (a non-positive timeout, attempts or sleep)."""

    def __init__(self, workflow: str, step: str, option: str, value: object, why: str) -> None:
        super().__init__(workflow, f"step {step!r}: {option} {why}, not {value!r}")
        self.step = step
        self.option = option
        self.value = value


class UnknownTopic(DefinitionError):
    """A step's topic has no handler in the app the run is started with."""

    def __init__(self, workflow: str, step: str, topic: str) -> None:
        super().__init__(workflow, f"step {step!r}: no handler is registered for topic {topic!r}")
        self.step = step
        self.topic = topic


class UnknownWorkflow(DefinitionError):
    """A child step names a workflow that is neither given nor registered."""

    def __init__(self, workflow: str, step: str, child: str) -> None:
        super().__init__(
            workflow,
            f"step {step!r}: child workflow {child!r} is not registered "
            "(pass the Workflow, or workflow.register it first)",
        )
        self.step = step
        self.child = child


class ChildCycle(DefinitionError):
    """Child steps would make a run start itself, directly or not; ``chain`` names it."""

    def __init__(self, workflow: str, chain: Sequence[str]) -> None:
        path = " -> ".join(chain)
        super().__init__(workflow, f"child runs would start themselves: {path}")
        self.chain = list(chain)


class RunNotFound(WorkflowError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no workflow run {run_id!r}")
        self.run_id = run_id


class CorruptRun(WorkflowError):
    """A run's stored record (or its journal) does not decode to a run: ``key`` names the
    record and ``reason`` says why. Nothing is written to a corrupt run."""

    def __init__(self, run_id: str, key: bytes, where: str, reason: str) -> None:
        super().__init__(f"run {run_id!r}: corrupt record at {where}: {reason}")
        self.run_id = run_id
        self.key = key
        self.where = where
        self.reason = reason


class InvalidRunState(WorkflowError):
    """The operation does not apply to the run in its current status."""

    def __init__(self, run_id: str, status: str, action: str) -> None:
        super().__init__(f"cannot {action} run {run_id!r}: it is {status}")
        self.run_id = run_id
        self.status = status
        self.action = action


class InvalidSignal(WorkflowError):
    """A signal names a step that is not an external step waiting for one."""

    def __init__(self, run_id: str, step: str, reason: str) -> None:
        super().__init__(f"cannot signal step {step!r} of run {run_id!r}: {reason}")
        self.run_id = run_id
        self.step = step
        self.reason = reason


class RunFailed(WorkflowError):
    """The awaited run failed (``step`` and ``error`` name where and why) or was
    cancelled (``status`` says which; ``step`` None)."""

    def __init__(self, run_id: str, status: str, step: str | None, error: str | None) -> None:
        if step is None:
            message = f"run {run_id!r} {status}"
        else:
            message = f"run {run_id!r} {status} at step {step!r}: {error}"
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.step = step
        self.error = error


class ResultTimeout(WorkflowError, TimeoutError):
    """The awaited run had not ended when the timeout passed."""

    def __init__(self, run_id: str, status: str, timeout: float) -> None:
        super().__init__(f"run {run_id!r} is still {status} after {timeout} s")
        self.run_id = run_id
        self.status = status
        self.timeout = timeout
