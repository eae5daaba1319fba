"""Defining a workflow: a DAG of steps, built fluently and validated before any write.

``Workflow(name).step(...).external(...).sleep(...)`` adds steps; each may name the
steps it runs ``after`` (forward references are allowed, so cycles and unknown names
are found by :meth:`Workflow.validate`, which :func:`workflow.start_run` calls). Local
mistakes (blank or duplicate keys, non-positive timeouts) raise at once. The stored
form (:meth:`Workflow.to_record`) travels with each run, so consumers need no copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from quick.jobs import DEFAULT_PRIORITY
from workflow import hooks
from workflow.errors import (
    BlankStepKey,
    CycleError,
    DefinitionError,
    DuplicateStep,
    InvalidStepOption,
    UnknownDependency,
    UnknownTopic,
)

__all__ = ["Workflow", "StepKind", "StepSpec", "Definition"]


class StepKind(StrEnum):
    """What a step does when it becomes runnable."""

    TASK = "task"  # runs the handler of its topic as a leased queue item
    EXTERNAL = "external"  # waits for a signal
    SLEEP = "sleep"  # a durable timer: a delayed queue item that holds no worker


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSpec:
    """One step of a definition."""

    key: str
    kind: StepKind
    after: tuple[str, ...] = ()
    topic: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    seconds: float | None = None
    priority: int = DEFAULT_PRIORITY

    def to_record(self) -> dict[str, Any]:
        return {
            "sk": self.key,
            "kd": self.kind.value,
            "af": list(self.after),
            "t": self.topic,
            "m": self.max_attempts,
            "to": self.timeout,
            "sl": self.seconds,
            "pr": self.priority,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StepSpec:
        return cls(
            key=record["sk"],
            kind=StepKind(record["kd"]),
            after=tuple(record["af"]),
            topic=record["t"],
            max_attempts=record["m"],
            timeout=record["to"],
            seconds=record["sl"],
            priority=record["pr"],
        )


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated workflow: steps in a topological order, and who follows whom."""

    name: str
    steps: dict[str, StepSpec]
    successors: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, steps: Iterable[StepSpec]) -> Definition:
        by_key = {spec.key: spec for spec in steps}
        following: dict[str, list[str]] = {key: [] for key in by_key}
        for spec in by_key.values():
            for dependency in spec.after:
                following[dependency].append(spec.key)
        return cls(name, by_key, {key: tuple(v) for key, v in following.items()})

    @property
    def roots(self) -> list[str]:
        return [key for key, spec in self.steps.items() if not spec.after]

    @property
    def sinks(self) -> list[str]:
        return [key for key, following in self.successors.items() if not following]

    def to_record(self) -> list[dict[str, Any]]:
        return [spec.to_record() for spec in self.steps.values()]

    @classmethod
    def from_record(cls, name: str, record: Iterable[Mapping[str, Any]]) -> Definition:
        return cls.of(name, (StepSpec.from_record(item) for item in record))


def _positive(workflow: str, step: str, option: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidStepOption(workflow, step, option, value, "must be a positive number")


class Workflow:
    """A workflow definition under construction; every builder method returns it.

    Args:
        name: the workflow's name (runs are listed and deduplicated by it).
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError(repr(name), "a workflow needs a non-blank name")
        self.name = name
        self._steps: list[StepSpec] = []

    # -- building ----------------------------------------------------------------------

    def step(
        self,
        key: str,
        *,
        topic: str,
        after: Iterable[str] = (),
        max_attempts: int | None = None,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Workflow:
        """A step that runs the handler of ``topic`` once its ``after`` steps succeeded.

        The handler gets the run's input as its payload and its dependencies' outputs
        in ``meta.context.results``; its return value becomes the step's output.
        """
        if not isinstance(topic, str) or not topic.strip():
            raise InvalidStepOption(self.name, str(key), "topic", topic, "must be a topic name")
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise InvalidStepOption(
                self.name, str(key), "max_attempts", max_attempts, "must be an integer >= 1"
            )
        _positive(self.name, str(key), "timeout", timeout)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidStepOption(self.name, str(key), "priority", priority, "must be an integer")
        if not -(2**63) <= priority < 2**63:
            raise InvalidStepOption(
                self.name, str(key), "priority", priority, "must fit in 64 bits"
            )
        return self._add(
            key,
            StepKind.TASK,
            after,
            topic=topic,
            max_attempts=max_attempts,
            timeout=timeout,
            priority=priority,
        )

    def external(self, key: str, *, after: Iterable[str] = ()) -> Workflow:
        """A step completed by :func:`workflow.signal`; the signal's payload is its output."""
        return self._add(key, StepKind.EXTERNAL, after)

    def sleep(self, key: str, *, seconds: float, after: Iterable[str] = ()) -> Workflow:
        """A durable timer: succeeds ``seconds`` after its ``after`` steps, holding no worker."""
        _positive(self.name, str(key), "seconds", seconds)
        return self._add(key, StepKind.SLEEP, after, seconds=float(seconds))

    def _add(self, key: Any, kind: StepKind, after: Iterable[str], **options: Any) -> Workflow:
        if not isinstance(key, str) or not key.strip():
            raise BlankStepKey(self.name, key)
        if any(spec.key == key for spec in self._steps):
            raise DuplicateStep(self.name, key)
        if isinstance(after, str):
            after = [after]
        dependencies = tuple(dict.fromkeys(after))
        for dependency in dependencies:
            if not isinstance(dependency, str) or not dependency.strip():
                raise BlankStepKey(self.name, dependency)
        self._steps.append(StepSpec(key=key, kind=kind, after=dependencies, **options))
        return self

    # -- hooks -------------------------------------------------------------------------

    def on_step_succeeded(self, fn: Callable[[hooks.HookEvent], Any]) -> Workflow:
        """Call ``fn(event)`` after each step of a run of this workflow succeeds."""
        hooks.register(self.name, hooks.STEP_SUCCEEDED, fn)
        return self

    def on_step_failed(self, fn: Callable[[hooks.HookEvent], Any]) -> Workflow:
        """Call ``fn(event)`` after a step of a run of this workflow fails for good."""
        hooks.register(self.name, hooks.STEP_FAILED, fn)
        return self

    def on_run_finished(self, fn: Callable[[hooks.HookEvent], Any]) -> Workflow:
        """Call ``fn(event)`` after a run of this workflow succeeds, fails or is cancelled."""
        hooks.register(self.name, hooks.RUN_FINISHED, fn)
        return self

    # -- validation --------------------------------------------------------------------

    @property
    def steps(self) -> list[StepSpec]:
        return list(self._steps)

    def validate(self, app: Any = None) -> Definition:
        """Check the whole graph (and, given the app, that every topic has a handler).

        Raises:
            DefinitionError: the subclass names the problem: no steps, an unknown
                dependency, a cycle (naming its steps), or an unknown topic.
        """
        if not self._steps:
            raise DefinitionError(self.name, "a workflow needs at least one step")
        keys = {spec.key for spec in self._steps}
        for spec in self._steps:
            for dependency in spec.after:
                if dependency not in keys:
                    raise UnknownDependency(self.name, spec.key, dependency)
        cycle = find_cycle({spec.key: spec.after for spec in self._steps})
        if cycle:
            raise CycleError(self.name, cycle)
        if app is not None:
            for spec in self._steps:
                if spec.topic is not None and app.config(spec.topic) is None:
                    raise UnknownTopic(self.name, spec.key, spec.topic)
        return Definition.of(self.name, self._steps)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={[spec.key for spec in self._steps]})"


def find_cycle(after: Mapping[str, Iterable[str]]) -> list[str]:
    """A cycle in the ``step -> dependencies`` graph, in dependency order; [] if none."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(key: str) -> list[str]:
        state[key] = 1
        path.append(key)
        for dependency in after.get(key, ()):
            if state.get(dependency) == 1:
                return path[path.index(dependency) :]
            if dependency not in state:
                found = visit(dependency)
                if found:
                    return found
        path.pop()
        state[key] = 2
        return []

    for key in after:
        if key not in state:
            found = visit(key)
            if found:
                return list(reversed(found))
    return []
