"""What a Django task's job stores: its topic, payload, result and failure text.

A task runs as a quick job on the queue named by its ``queue_name``:

===========  ==============================================================================
topic        ``django:`` + the task's module path (``shop.tasks.fulfil``). The worker
             resolves it only among the tasks this project registered with a
             :class:`~quick.contrib.django.QuickBackend`; it is never imported.
payload      ``{"a": args, "k": kwargs, "b": backend alias, "e": enqueued ms}``, the
             arguments as JSON values (Django's contract: they must survive JSON).
result       what the handler returns (stored with the finished job):
             ``{"r": return value, "w": worker id, "n": attempt, "s": started ms,
             "f": finished ms, "t": module path, "a", "k", "b", "e" as in the payload}``.
error        a failed task's attempt raises :class:`TaskFailed`, recorded by quick as
             ``TaskFailed: {"c": exception class path, "w": worker, "s": started ms}``,
             a newline, then the traceback's last :data:`TRACEBACK_BYTES` bytes.
===========  ==============================================================================

Nothing decoded here is trusted: a wrong shape raises :class:`ValueError` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from keyspace.codec import pack_value
from quick.errors import InvalidPayload
from quick.jobs import DEFAULT_PRIORITY

__all__ = [
    "TOPIC_PREFIX",
    "TRACEBACK_BYTES",
    "Arguments",
    "Failure",
    "TaskFailed",
    "topic_of",
    "module_path_of",
    "quick_priority",
    "json_value",
    "encode_arguments",
    "decode_arguments",
    "Output",
    "encode_output",
    "decode_output",
    "parse_failure",
]

TOPIC_PREFIX = "django:"
#: The tail of a traceback kept with a failure: quick keeps 2,000 bytes of error text,
#: and the end of a traceback (the raise) says the most.
TRACEBACK_BYTES = 1_500


def topic_of(module_path: str) -> str:
    """The quick topic of the task at ``module_path``."""
    return TOPIC_PREFIX + module_path


def module_path_of(topic: str) -> str | None:
    """The task module path a topic names, or None for a topic that is not a task's."""
    return topic[len(TOPIC_PREFIX) :] if topic.startswith(TOPIC_PREFIX) else None


def quick_priority(django_priority: int) -> int:
    """Django's priority (-100..100, higher runs first) as quick's (lower runs first):
    Django's default 0 is quick's default 100; the range maps onto 0..200."""
    return DEFAULT_PRIORITY - django_priority


@dataclass(frozen=True, slots=True, kw_only=True)
class Arguments:
    """A task's call as stored in its job's payload."""

    args: list[Any]
    kwargs: dict[str, Any]
    backend: str
    enqueued_ms: int

    def to_payload(self) -> dict[str, Any]:
        return {"a": self.args, "k": self.kwargs, "b": self.backend, "e": self.enqueued_ms}


def encode_arguments(
    normalize_json: Any, args: Any, kwargs: Any, backend: str, enqueued_ms: int
) -> Arguments:
    """The arguments as JSON values; InvalidPayload naming the first one that is not one
    (before anything is written)."""
    normal_args = []
    for index, value in enumerate(args):
        normal_args.append(json_value(normalize_json, f"args[{index}]", value))
    normal_kwargs = {}
    for name, value in kwargs.items():
        normal_kwargs[name] = json_value(normalize_json, f"kwargs[{name!r}]", value)
    return Arguments(
        args=normal_args, kwargs=normal_kwargs, backend=backend, enqueued_ms=enqueued_ms
    )


def json_value(normalize_json: Any, field: str, value: Any) -> Any:
    """``value`` as a JSON store would give it back (Django's contract for a task's
    arguments and return value); InvalidPayload naming ``field`` when it is not one."""
    try:  # what a JSON store would give back: tuples as lists, keys as strings
        normal = json.loads(json.dumps(normalize_json(value), allow_nan=False))
        pack_value(normal)  # and what msgpack holds: integers of at most 64 bits
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidPayload(
            f"must be a JSON value; this {type(value).__name__} is not ({error})",
            field=field,
        ) from None
    return normal


def decode_arguments(payload: Any) -> Arguments:
    """A stored payload back into :class:`Arguments` (ValueError for any other shape)."""
    if not isinstance(payload, dict):
        raise ValueError(f"a Django task's payload is a {type(payload).__name__}, not a map")
    args, kwargs = payload.get("a"), payload.get("k")
    backend, enqueued = payload.get("b"), payload.get("e")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("a Django task's payload needs a list 'a' and a map 'k'")
    if not all(isinstance(name, str) for name in kwargs):
        raise ValueError("a Django task's keyword arguments must have string names")
    if not isinstance(backend, str) or not isinstance(enqueued, int):
        raise ValueError("a Django task's payload needs a backend 'b' and a time 'e'")
    return Arguments(args=args, kwargs=kwargs, backend=backend, enqueued_ms=enqueued)


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """A finished task's stored result (see the module docstring)."""

    value: Any
    worker: str
    attempt: int
    started_ms: int
    finished_ms: int
    module_path: str
    arguments: Arguments


def encode_output(
    value: Any,
    worker: str,
    attempt: int,
    started_ms: int,
    finished_ms: int,
    module_path: str,
    call: Arguments,
) -> dict[str, Any]:
    """What the worker's handler returns for a task that returned ``value``."""
    return {
        "r": value,
        "w": worker,
        "n": attempt,
        "s": started_ms,
        "f": finished_ms,
        "t": module_path,
        **call.to_payload(),
    }


def decode_output(stored: Any) -> Output:
    """A stored result back into :class:`Output` (ValueError for any other shape)."""
    call = decode_arguments(stored)
    worker, attempt, started, finished, path = (stored.get(k) for k in ("w", "n", "s", "f", "t"))
    if not isinstance(worker, str) or not isinstance(path, str):
        raise ValueError("a Django task's result needs a worker 'w' and a module path 't'")
    if not all(isinstance(n, int) for n in (attempt, started, finished)) or attempt < 1:
        raise ValueError("a Django task's result needs an attempt 'n' and times 's' and 'f'")
    return Output(
        value=stored.get("r"),
        worker=worker,
        attempt=attempt,
        started_ms=started,
        finished_ms=finished,
        module_path=path,
        arguments=call,
    )


class TaskFailed(Exception):
    """A Django task raised: carries what Django's ``TaskError`` needs through quick's
    error text (see the module docstring)."""

    def __init__(self, exception_class_path: str, traceback: str, worker: str, started_ms: int):
        data = traceback.encode("utf-8", "replace")
        if len(data) > TRACEBACK_BYTES:
            traceback = "..." + data[-TRACEBACK_BYTES:].decode("utf-8", "ignore")
        header = json.dumps({"c": exception_class_path, "w": worker, "s": started_ms})
        super().__init__(f"{header}\n{traceback}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A failed task's error, read back from quick's error text."""

    exception_class_path: str
    traceback: str
    worker: str = ""
    started_ms: int | None = None


#: How quick names an error it records (``quick.outcomes.describe_error``).
_PREFIX = f"{TaskFailed.__name__}: "
#: The class a failure is reported as when quick, not the task, failed the job (no
#: handler, a lease that ran out too often, a payload of the wrong shape).
QUICK_FAILURE = "quick.errors.QuickError"


def parse_failure(error: str) -> Failure:
    """The failure quick recorded as ``error``: a task's own, or quick's (whole text)."""
    if error.startswith(_PREFIX):
        header, _, traceback = error[len(_PREFIX) :].partition("\n")
        try:
            fields = json.loads(header)
        except ValueError:
            fields = None
        if (
            isinstance(fields, dict)
            and isinstance(fields.get("c"), str)
            and isinstance(fields.get("w"), str)
            and isinstance(fields.get("s"), int)
        ):
            return Failure(
                exception_class_path=fields["c"],
                traceback=traceback,
                worker=fields["w"],
                started_ms=fields["s"],
            )
    return Failure(exception_class_path=QUICK_FAILURE, traceback=error)
