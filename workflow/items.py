"""What a workflow stores on the queue: the extension data of its items, and their topics.

A workflow item's extension data (see :mod:`quick.extensions`) names :data:`MODULE`, so
the queue routes its settlement to :class:`workflow.steps.StepExtension`. A step's item
carries a :class:`StepItem` (which run and step it stands for; a task's also its
dependencies' outputs and timeout); a hook item carries only :func:`hook_item`'s mark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyspace.codec import CorruptValue
from quick.extensions import MODULE_FIELD

__all__ = [
    "MODULE",
    "SLEEP_TOPIC",
    "HOOK_TOPIC",
    "HOOK_ITEM",
    "MAP_TOPIC",
    "MAP_ITEM",
    "StepItem",
    "hook_item",
    "is_hook",
    "is_pager",
]

#: The module name stored in step items' extension data (see :mod:`quick.extensions`).
MODULE = "workflow"
#: The topic of a sleep step's delayed item (handled by the workflow itself).
SLEEP_TOPIC = "workflow.sleep"
#: The topic of a hook item (see :mod:`workflow.hook_jobs`).
HOOK_TOPIC = "workflow.hook"
#: The ``xk`` value that marks a hook item.
HOOK_ITEM = "hook"
#: The topic of a map's pager item (handled by the workflow itself).
MAP_TOPIC = "workflow.map"
#: The ``xk`` value that marks a map's pager item.
MAP_ITEM = "map"


def hook_item() -> dict[str, Any]:
    """The extension data of a hook item."""
    return {MODULE_FIELD: MODULE, "xk": HOOK_ITEM}


def is_hook(data: Mapping[str, Any] | None) -> bool:
    """Whether ``data`` (a job's extension data) marks a hook item."""
    return data is not None and data.get("xk") == HOOK_ITEM


def is_pager(data: Mapping[str, Any] | None) -> bool:
    """Whether ``data`` (a job's extension data) marks a map's pager item."""
    return data is not None and data.get("xk") == MAP_ITEM


@dataclass(frozen=True, slots=True, kw_only=True)
class StepItem:
    """The extension data of the queue item that stands for one step of a run."""

    run_id: str
    step: str
    workflow: str
    #: The outputs of the step's dependencies, by step key (None: a sleep step's item).
    results: dict[str, Any] | None = None
    #: The step's handler timeout, seconds (None: the handler's own).
    timeout: float | None = None
    #: A map instance's index; a map pager's next index.
    index: int | None = None
    #: A map instance's copy of the run's input.
    input: Any = None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            MODULE_FIELD: MODULE,
            "ri": self.run_id,
            "sk": self.step,
            "w": self.workflow,
        }
        if self.results is not None:
            record.update(dep=self.results, to=self.timeout)
        if self.index is not None:
            record.update(mx=self.index, **{"in": self.input})
        return record

    @classmethod
    def from_record(cls, data: Mapping[str, Any] | None) -> StepItem:
        """Decode a step item's extension data; CorruptValue when it is not one."""
        if data is None:
            raise CorruptValue("a step item without extension data")
        try:
            item = cls(
                run_id=data["ri"],
                step=data["sk"],
                workflow=data["w"],
                results=dict(data["dep"]) if "dep" in data else None,
                timeout=data.get("to"),
                index=data.get("mx"),
                input=data.get("in"),
            )
            texts = (item.run_id, item.step, item.workflow)
            if not all(isinstance(text, str) for text in texts):
                raise TypeError(f"run, step and workflow must be texts: {texts!r}")
            if item.timeout is not None and not isinstance(item.timeout, int | float):
                raise TypeError(f"timeout is {item.timeout!r}")
            if item.index is not None and (
                not isinstance(item.index, int) or isinstance(item.index, bool)
            ):
                raise TypeError(f"index is {item.index!r}")
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptValue(f"step item data is malformed: {error!r}") from error
        return item
