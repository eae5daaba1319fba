"""Defining a workflow: a DAG of steps, built fluently and validated before any write.

``Workflow(name).step(...).external(...).sleep(...)`` adds steps; each may name the
steps it runs ``after`` (forward references are allowed, so cycles and unknown names
are found by :meth:`Workflow.validate`, which :func:`workflow.start_run` calls). Local
mistakes (blank or duplicate keys, non-positive timeouts) raise at once. The stored
form (:meth:`Workflow.to_record`) travels with each run, so consumers need no copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from quick.jobs import DEFAULT_PRIORITY
from quick.validation import check_name
from workflow import hooks
from workflow.errors import (
    BlankStepKey,
    ChildCycle,
    CycleError,
    DefinitionError,
    DuplicateStep,
    InvalidStepOption,
    UnknownDependency,
    UnknownTopic,
    UnknownWorkflow,
)

__all__ = [
    "Workflow",
    "StepKind",
    "StepSpec",
    "Definition",
    "MAP_LIMIT",
    "register",
    "descendants",
]


class StepKind(StrEnum):
    """What a step does when it becomes runnable."""

    TASK = "task"  # runs the handler of its topic as a leased queue item
    EXTERNAL = "external"  # waits for a signal
    SLEEP = "sleep"  # a durable timer: a delayed queue item that holds no worker
    MAP = "map"  # one task instance per item of a predecessor's list output
    BRANCH = "branch"  # a task whose output names which declared branch of steps runs
    CHILD = "child"  # starts a run of another workflow and completes with its result


#: Most instances one map step runs (a longer list fails the step, naming its length).
MAP_LIMIT = 10_000


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
    #: A map step: the step whose list output it maps.
    over: str | None = None
    #: A branch step: its branches, each the steps that run only when it is chosen.
    branches: Mapping[str, tuple[str, ...]] | None = None
    #: A child step: the child workflow's name, its stored definition (resolved when
    #: the parent run starts, so the child runs the code the parent started with), and
    #: the queue its run goes on (None: the parent's).
    child: str | None = None
    child_definition: list[Any] | None = None
    queue: str | None = None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "sk": self.key,
            "kd": self.kind.value,
            "af": list(self.after),
            "t": self.topic,
            "m": self.max_attempts,
            "to": self.timeout,
            "sl": self.seconds,
            "pr": self.priority,
        }
        optional = {
            "ov": self.over,
            "br": None if self.branches is None else {k: list(v) for k, v in self.branches.items()},
            "cw": self.child,
            "cd": self.child_definition,
            "q": self.queue,
        }
        record.update((name, value) for name, value in optional.items() if value is not None)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StepSpec:
        branches = record.get("br")
        return cls(
            key=record["sk"],
            kind=StepKind(record["kd"]),
            after=tuple(record["af"]),
            topic=record["t"],
            max_attempts=record["m"],
            timeout=record["to"],
            seconds=record["sl"],
            priority=record["pr"],
            over=record.get("ov"),
            branches=None if branches is None else {k: tuple(v) for k, v in branches.items()},
            child=record.get("cw"),
            child_definition=record.get("cd"),
            queue=record.get("q"),
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


@dataclass(frozen=True, slots=True)
class StepOptions:
    """The options of a step that runs handlers, checked."""

    topic: str | None
    max_attempts: int | None
    timeout: float | None
    priority: int

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


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
        #: Child workflows given as objects, by step key (others are looked up by name).
        self._children: dict[str, Workflow] = {}

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
        options = self._task_options(key, topic, max_attempts, timeout, priority)
        return self._add(key, StepKind.TASK, after, **options)

    def map(
        self,
        key: str,
        *,
        topic: str,
        over: str,
        after: Iterable[str] = (),
        max_attempts: int | None = None,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Workflow:
        """One instance of ``topic``'s handler per item of step ``over``'s list output.

        Each instance gets its item as its payload (the run's input is
        ``meta.context.input``) and retries on its own; a step after the map receives
        the instances' outputs, in item order, in ``meta.context.results[key]`` (a
        :class:`workflow.MapOutputs` to read page by page when they are too large to
        travel inline). An empty list succeeds at once; a list of more than
        :data:`MAP_LIMIT` items, or an output that is no list, fails the step.
        """
        options = self._task_options(key, topic, max_attempts, timeout, priority)
        if not isinstance(over, str) or not over.strip():
            raise InvalidStepOption(self.name, str(key), "over", over, "must be a step key")
        if isinstance(after, str):
            after = [after]
        return self._add(key, StepKind.MAP, [over, *after], over=over, **options)

    def branch(
        self,
        key: str,
        *,
        topic: str,
        branches: Mapping[str, Iterable[str]],
        after: Iterable[str] = (),
        max_attempts: int | None = None,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Workflow:
        """A step whose handler returns the name of the branch that runs next.

        ``branches`` maps each name to the steps that run only when it is chosen (each
        must come after this step); the others are skipped with the reason, and a step
        after several branches waits only for the chosen one. Returning an undeclared
        name fails the step.
        """
        options = self._task_options(key, topic, max_attempts, timeout, priority)
        if not isinstance(branches, Mapping) or not branches:
            raise InvalidStepOption(
                self.name, str(key), "branches", branches, "must map branch names to step keys"
            )
        declared: dict[str, tuple[str, ...]] = {}
        for name, keys in branches.items():
            if not isinstance(name, str) or not name.strip():
                raise InvalidStepOption(
                    self.name, str(key), "branches", name, "names must be non-blank strings"
                )
            listed = [keys] if isinstance(keys, str) else list(keys)
            for listed_key in listed:
                if not isinstance(listed_key, str) or not listed_key.strip():
                    raise BlankStepKey(self.name, listed_key)
            declared[name] = tuple(dict.fromkeys(listed))
        return self._add(key, StepKind.BRANCH, after, branches=declared, **options)

    def child(
        self,
        key: str,
        *,
        workflow: str | Workflow,
        after: Iterable[str] = (),
        queue_id: str | None = None,
        max_attempts: int | None = None,
    ) -> Workflow:
        """A step that starts a run of ``workflow`` and completes with its result.

        ``workflow`` is a :class:`Workflow` or the name of one passed to
        :func:`workflow.register`; its definition is resolved when the parent run starts
        and stored with it. The child's input is its dependency's output (a dict by
        step key for several; the parent's input for none); it runs on ``queue_id``
        (None: the parent's queue). A failed or cancelled child fails the step once
        ``max_attempts`` child runs (default 1) have; cancelling the parent cancels it.
        """
        if isinstance(workflow, Workflow):
            name = workflow.name
        elif isinstance(workflow, str) and workflow.strip():
            name = workflow
        else:
            raise InvalidStepOption(
                self.name, str(key), "workflow", workflow, "must be a Workflow or its name"
            )
        check_name("queue_id", queue_id, optional=True)
        options = self._task_options(key, None, max_attempts, None, DEFAULT_PRIORITY)
        self._add(key, StepKind.CHILD, after, child=name, queue=queue_id, **options)
        if isinstance(workflow, Workflow):
            self._children[key] = workflow
        return self

    def _task_options(
        self,
        key: Any,
        topic: str | None,
        max_attempts: int | None,
        timeout: float | None,
        priority: int,
    ) -> dict[str, Any]:
        """The checked options of a step that runs handlers (InvalidStepOption if not)."""
        if topic is not None and (not isinstance(topic, str) or not topic.strip()):
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
        return StepOptions(topic, max_attempts, timeout, priority).as_kwargs()

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

        Child workflows are resolved (by object, else by registered name) and their
        definitions stored in their steps, recursively.

        Raises:
            DefinitionError: the subclass names the problem: no steps, an unknown
                dependency, a cycle (naming its steps), an unknown topic, a branch
                naming a step that does not follow it, an unregistered child workflow,
                or a chain of child runs that would start itself.
        """
        return self._validate(app, (self.name,))

    def _validate(self, app: Any, chain: tuple[str, ...]) -> Definition:
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
        steps = [self._resolve(spec, app, chain) for spec in self._steps]
        definition = Definition.of(self.name, steps)
        for spec in steps:
            for name, listed in (spec.branches or {}).items():
                below = descendants(definition, spec.key)
                for key in listed:
                    if key not in below:
                        raise InvalidStepOption(
                            self.name,
                            spec.key,
                            "branches",
                            key,
                            f"branch {name!r} must list steps that run after {spec.key!r}",
                        )
        return definition

    def _resolve(self, spec: StepSpec, app: Any, chain: tuple[str, ...]) -> StepSpec:
        """``spec`` with its child workflow's definition, when it is a child step."""
        if spec.child is None:
            return spec
        target = self._children.get(spec.key) or _REGISTRY.get(spec.child)
        if target is None:
            raise UnknownWorkflow(self.name, spec.key, spec.child)
        if target.name in chain:
            raise ChildCycle(self.name, [*chain, target.name])
        resolved = target._validate(app, (*chain, target.name))
        return dataclasses.replace(spec, child_definition=resolved.to_record())

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={[spec.key for spec in self._steps]})"


_REGISTRY: dict[str, Workflow] = {}


def register(wf: Workflow) -> Workflow:
    """Make ``wf`` the workflow child steps naming ``wf.name`` start (in this process)."""
    if not isinstance(wf, Workflow):
        raise TypeError(f"register takes a Workflow, not {type(wf).__name__}")
    _REGISTRY[wf.name] = wf
    return wf


def descendants(definition: Definition, key: str) -> set[str]:
    """Every step that runs after ``key``, directly or not."""
    found: set[str] = set()
    todo = list(definition.successors[key])
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(definition.successors[current])
    return found


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
