"""Typed calls: enqueue a job through its handler, checked against the handler's signature.

    @app.job("email:send")
    def send(*, to: str, subject: str = "") -> None: ...

    send.enqueue(db, "tenant-42", to="ada@example.com")          # mypy checks the arguments
    send.using(priority=1, delay=60, job_id="welcome:ada").enqueue(db, "tenant-42", to="ada")
    await send.aenqueue(db, "tenant-42", to="ada@example.com")   # quick.aio, asyncio or trio

How a handler's parameters map to its job (one rule, read from the signature when it is
registered):

* A handler with **keyword-only** parameters (declared after a bare ``*``), or with no
  parameters but ``meta`` and ``**kwargs``, is a *typed handler*. Its job's payload is
  the map of its arguments (msgpack values), and the worker calls it with them as
  keywords. Positional parameters before the ``*`` receive what the job knows: none,
  ``meta`` (a :class:`quick.Meta`), or ``tr, meta`` to run inside the transaction
  that completes the job, as a ``(tr, payload, meta)`` handler does.
* Any other handler takes ``(payload, meta)`` or ``(tr, payload, meta)`` as before; the
  decorator returns it unchanged, and it is enqueued by topic.

``@app.job`` returns a :class:`JobHandler` for a typed handler: still callable as the
function (the same arguments, the same result), with ``enqueue``/``aenqueue``/``spec``
typed by the handler's keyword parameters (a ``ParamSpec``), so mypy rejects a missing,
extra or wrongly typed argument. At run time the same mistakes, and a value msgpack
cannot store, raise :class:`~quick.errors.InvalidArgument` naming the argument before
anything is written. A stored payload that does not fit the handler (a deploy changed
its signature, a job enqueued by topic) fails the attempt with the reason, as any
handler error does: it is retried and finally dead-lettered, never guessed at.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from keyspace.codec import pack_value
from keyspace.protocol import Database, Transaction
from quick.enqueueing import enqueue
from quick.errors import InvalidArgument, InvalidPayload
from quick.jobs import now_ms
from quick.validation import check_max_attempts, check_name, check_priority, visibility_ms

if TYPE_CHECKING:
    from quick.aio_transaction import AsyncTransaction


__all__ = [
    "JobHandler",
    "Registry",
    "Shape",
    "shape_of",
    "adapt",
    "arguments_of",
    "check_stored_arguments",
]

P = ParamSpec("P")
A = ParamSpec("A")
R = TypeVar("R")

#: What a typed handler's positional parameters receive, by how many it declares.
_INJECTED = {0: (), 1: ("meta",), 2: ("tr", "meta")}


class Registry(Protocol):
    """What a :class:`JobHandler` needs of its app (a :class:`quick.App`): the config
    (default priority and attempts) of the topics it handles."""

    def config(self, topic: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Shape:
    """A typed handler's signature, as its jobs use it."""

    #: What its positional parameters receive: ``()``, ``("meta",)`` or ``("tr", "meta")``.
    injected: tuple[str, ...]
    #: Its keyword parameters: the job's arguments.
    required: frozenset[str]
    optional: frozenset[str]
    #: Whether it takes ``**kwargs`` (then any argument name is accepted).
    open_ended: bool

    @property
    def transactional(self) -> bool:
        return "tr" in self.injected


def shape_of(topic: str, handler: Callable[..., Any]) -> Shape | None:
    """The typed shape of ``handler``, or None for a ``(payload, meta)`` handler.

    A typed handler has keyword-only parameters (its job's arguments) after nothing,
    ``meta`` or ``tr, meta``. Two positional parameters whose first is not named ``tr``,
    or three, followed only by keyword-only parameters with defaults, make a plain
    handler with options of its own.

    Raises:
        InvalidArgument: a typed handler with more than two positional parameters, or
            with ``*args`` (a job's arguments are keywords).
    """
    params = list(inspect.signature(handler).parameters.values())
    kinds = [p.kind for p in params]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword = [p for p in params if p.kind is p.KEYWORD_ONLY]
    varargs = inspect.Parameter.VAR_POSITIONAL in kinds
    if not keyword and (varargs or len(positional) > 1):
        return None  # (payload, meta), (tr, payload, meta), (*args), ...
    plain_shape = len(positional) == 3 or (len(positional) == 2 and positional[0].name != "tr")
    if plain_shape and all(p.default is not p.empty for p in keyword):
        # (payload, meta, *, option=...) or (tr, payload, meta, *, option=...): a plain
        # handler with keyword-only options of its own, not a typed one (whose first of
        # two is tr), since nothing is left for a job's arguments to fill.
        return None
    if varargs or len(positional) > 2:
        raise InvalidArgument(
            "handler",
            f"{topic!r}: a handler with keyword-only arguments takes at most (tr, meta) "
            "before its '*', and no *args",
        )
    return Shape(
        injected=_INJECTED[len(positional)],
        required=frozenset(p.name for p in keyword if p.default is p.empty),
        optional=frozenset(p.name for p in keyword if p.default is not p.empty),
        open_ended=inspect.Parameter.VAR_KEYWORD in kinds,
    )


def arguments_of(
    topic: str, shape: Shape, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The payload of a typed call: its keyword arguments, checked against ``shape``.

    Raises:
        InvalidArgument: positional arguments, a missing or unknown argument (named), or
            a value msgpack cannot store (named).
    """
    if args:
        raise InvalidArgument("args", f"{topic!r} takes keyword arguments only, not {len(args)}")
    for name in sorted(shape.required - kwargs.keys()):
        raise InvalidArgument(name, f"{topic!r} needs this argument")
    if not shape.open_ended:
        for name in sorted(kwargs.keys() - shape.required - shape.optional):
            raise InvalidArgument(name, f"{topic!r} has no such argument")
    for name, value in kwargs.items():
        try:
            pack_value(value)
        except TypeError as error:
            raise InvalidArgument(name, f"cannot be stored: {error}") from None
    return kwargs


def check_stored_arguments(topic: str, shape: Shape, payload: Any) -> dict[str, Any]:
    """A job's payload as a typed handler's keyword arguments (None: none).

    Raises:
        InvalidPayload: the payload is not a map of argument names.
        InvalidArgument: a missing or unknown argument, named.
    """
    if payload is None:
        payload = {}
    if not isinstance(payload, dict) or not all(isinstance(key, str) for key in payload):
        raise InvalidPayload(
            f"{topic!r} takes keyword arguments; the job's payload is {reprlib.repr(payload)}"
        )
    return arguments_of(topic, shape, (), payload)


def adapt(topic: str, handler: Callable[..., Any], shape: Shape) -> Callable[..., Any]:
    """``handler`` called the way jobs call handlers: ``(payload, meta)``, or
    ``(tr, payload, meta)`` for one that takes the transaction."""
    if shape.transactional:

        def in_transaction(tr: Transaction, payload: Any, meta: Any) -> Any:
            return handler(tr, meta, **check_stored_arguments(topic, shape, payload))

        return in_transaction
    with_meta = bool(shape.injected)
    if inspect.iscoroutinefunction(handler):

        async def awaited(payload: Any, meta: Any) -> Any:
            kwargs = check_stored_arguments(topic, shape, payload)
            return await (handler(meta, **kwargs) if with_meta else handler(**kwargs))

        return awaited

    def plain(payload: Any, meta: Any) -> Any:
        kwargs = check_stored_arguments(topic, shape, payload)
        return handler(meta, **kwargs) if with_meta else handler(**kwargs)

    return plain


@dataclass(frozen=True, slots=True, kw_only=True)
class _Options:
    priority: int | None = None
    delay: Any = None
    at: Any = None
    max_attempts: int | None = None
    job_id: str | None = None
    unique_key: str | None = None

    def given(self) -> dict[str, Any]:
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) is not None
        }


class JobHandler(Generic[P, A, R]):
    """A typed handler as ``@app.job`` returns it: callable as the function, and enqueued
    through it with its own arguments (``P``: the function's parameters; ``A``: the
    job's arguments, its keyword parameters)."""

    def __init__(
        self,
        app: Registry,
        topic: str,
        function: Callable[P, R],
        shape: Shape,
        options: _Options | None = None,
    ) -> None:
        self.app = app
        self.topic = topic
        self.function = function
        self.shape = shape
        self._options = options or _Options()
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function itself (no job)."""
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<JobHandler {self.topic!r} {self.function.__qualname__}>"

    def using(
        self,
        *,
        priority: int | None = None,
        delay: Any = None,
        at: Any = None,
        max_attempts: int | None = None,
        job_id: str | None = None,
        unique_key: str | None = None,
    ) -> JobHandler[P, A, R]:
        """The same handler with options for the jobs it enqueues (those not given keep
        the earlier ``using``'s, else the handler's defaults); checked here.

        Args:
            priority: lower numbers run first.
            delay: seconds or a timedelta until the job becomes visible.
            at: an aware datetime when the job becomes visible (instead of delay).
            max_attempts: attempts before the job is dead-lettered.
            job_id: a caller-chosen id; enqueueing the same id again adds nothing.
            unique_key: while a job with this key is pending or running, enqueue returns its id.

        Raises:
            InvalidArgument: a bad option, named.
        """
        if priority is not None:
            check_priority(priority)
        check_max_attempts(max_attempts)
        check_name("job_id", job_id, optional=True)
        check_name("unique_key", unique_key, optional=True)
        old = self._options
        options = _Options(
            priority=old.priority if priority is None else priority,
            delay=old.delay if delay is None and at is None else delay,
            at=old.at if delay is None and at is None else at,
            max_attempts=old.max_attempts if max_attempts is None else max_attempts,
            job_id=old.job_id if job_id is None else job_id,
            unique_key=old.unique_key if unique_key is None else unique_key,
        )
        visibility_ms(options.delay, options.at, now_ms())
        return JobHandler(self.app, self.topic, self.function, self.shape, options)

    def spec(self, queue_id: str, /, *args: A.args, **kwargs: A.kwargs) -> dict[str, Any]:
        """One job for ``quick.enqueue_many`` (or its async twin), checked as ``enqueue`` is."""
        payload = arguments_of(self.topic, self.shape, args, kwargs)
        config = self.app.config(self.topic)
        defaults = {}
        if config is not None:
            defaults = {"priority": config.priority, "max_attempts": config.max_attempts}
        return {
            "queue_id": queue_id,
            "topic": self.topic,
            "payload": payload,
            **defaults,
            **self._options.given(),
        }

    def enqueue(
        self, db_or_tr: Database | Transaction, queue_id: str, /, *args: A.args, **kwargs: A.kwargs
    ) -> str:
        """Put a job running this handler with these arguments on ``queue_id``; its id.

        Joins ``db_or_tr`` when it is a transaction, as :func:`quick.enqueue` does.

        Raises:
            InvalidArgument: positional, missing or unknown arguments, a value msgpack
                cannot store, or a bad queue id; nothing is written.
            QueueMoved: ``quick migrate`` moved the queue to another store.
        """
        return enqueue(db_or_tr, **self.spec(queue_id, *args, **kwargs))

    async def aenqueue(
        self,
        db_or_tr: Database | AsyncTransaction,
        queue_id: str,
        /,
        *args: A.args,
        **kwargs: A.kwargs,
    ) -> str:
        """:meth:`enqueue`, awaited through :func:`quick.aio.enqueue` (asyncio or trio);
        joins an async transaction from :func:`quick.aio.transact`."""
        from quick.aio_transaction import run_joined  # not at import: quick stays free of asyncio

        return await run_joined(db_or_tr, enqueue, **self.spec(queue_id, *args, **kwargs))
