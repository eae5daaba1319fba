"""``QuickBackend``: the tasks of a Django project (``django.tasks`` in Django 6, the
``django-tasks`` backport before it) run as quick jobs.

    TASKS = {"default": {"BACKEND": "quick.contrib.django.QuickBackend",
                         "OPTIONS": {"url": "sqlite:///./quick.db"}}}

A task is enqueued as one job on the quick queue named by its ``queue_name``, with its
priority mapped onto quick's and ``run_after`` as the job's visibility time; the result
id is the job id. ``get_result`` reads the job (READY, RUNNING), the finished job's
stored result (SUCCESSFUL) or its dead letter (FAILED); :mod:`.records` has the shapes.
The worker (``manage.py quick_worker``) runs a job only for a task this process
registered: every task created for a QuickBackend registers itself here (Django
validates each task with its backend), so a stored topic never names code to import.
"""

from __future__ import annotations

import datetime as dt
import importlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

import quick
from keyspace import resolve_url
from keyspace.codec import CorruptValue
from keyspace.layout import queue_keys
from keyspace.protocol import Database, Transaction
from quick.contrib.django import records
from quick.contrib.django.compat import api
from quick.corruption import CorruptRecord
from quick.enqueueing import directory_entry
from quick.errors import CorruptResult, InvalidArgument
from quick.inspection import DeadLetter, get_dead
from quick.jobs import Job, JobState, now_ms
from quick.results import look
from quick.validation import check_max_attempts, check_name

__all__ = ["QuickBackend", "registered_task", "registered_tasks", "discover_tasks"]

#: Every task created for a QuickBackend in this process, by module path: the only
#: code a worker runs (a job's topic is looked up here, never imported).
_registered: dict[str, Any] = {}
#: One open store per URL, shared by the backend instances of every thread.
_stores: dict[str, Database] = {}
_stores_lock = threading.Lock()
_OPTIONS = {"url", "max_attempts", "modules"}


def registered_task(module_path: str) -> Any | None:
    """The task registered under ``module_path`` in this process, if any."""
    return _registered.get(module_path)


def registered_tasks() -> dict[str, Any]:
    """Every task registered with a QuickBackend in this process, by module path."""
    return dict(_registered)


def discover_tasks(modules: Iterable[str] = ()) -> dict[str, Any]:
    """Import each installed app's ``tasks`` module and ``modules`` (named by the
    project's settings, never by the store), so their tasks register; return them all."""
    autodiscover_modules("tasks")
    for module in modules:
        importlib.import_module(module)
    return registered_tasks()


def _store(url: str) -> Database:
    with _stores_lock:
        db = _stores.get(url)
        if db is None:
            db = _stores[url] = quick.open(url)
        return db


def _time(ms: int | None) -> dt.datetime | None:
    """Milliseconds as Django's ``timezone.now()`` would give them (aware in UTC with
    ``USE_TZ``, else naive in the default time zone)."""
    if ms is None:
        return None
    value = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return value if settings.USE_TZ else timezone.make_naive(value)


@contextmanager
def _unreadable_as_missing(result_id: str) -> Iterator[None]:
    """A record of ``result_id`` that does not decode, or not to a Django task's (named
    in the message), reads as no result: Django's TaskResultDoesNotExist."""
    try:
        yield
    except (CorruptValue, CorruptResult, ValueError, TypeError) as error:
        raise api.TaskResultDoesNotExist(f"result {result_id}: {error}") from None


@dataclass(frozen=True, slots=True)
class _Found:
    """What the store holds for a result id: the job record while it is pending or
    running, else its outcome with the finished job's output or its dead letter."""

    job: Job | None = None
    outcome: str | None = None
    output: Any = None
    dead: DeadLetter | None = None


@quick.transactional
def _read(tr: Transaction, job_id: str) -> _Found | None:
    entry = directory_entry(tr, job_id)
    if entry is None:
        return None
    queue, outcome = entry.get("q"), entry.get("s")
    if not isinstance(queue, str):
        raise CorruptValue(f"the job directory entry of {job_id!r} names no queue")
    if outcome is None:
        data = tr.get(queue_keys(queue).job(job_id))
        return None if data is None else _Found(job=Job.from_value(queue, job_id, data))
    if outcome == JobState.DEAD.value:
        dead = get_dead(tr, queue, job_id)
        if isinstance(dead, CorruptRecord):
            raise CorruptValue(f"dead letter {dead.key!r}: {dead.reason}")
        return _Found(outcome=outcome, dead=dead)
    if outcome == JobState.COMPLETED.value:
        return _Found(outcome=outcome, output=look(tr, job_id))
    return _Found(outcome=str(outcome))


#: The installed API's backend base class (Django 6's or the backport's).
_BaseTaskBackend: Any = api.BaseTaskBackend


class QuickBackend(_BaseTaskBackend):  # type: ignore[misc]
    """A Django task backend that enqueues each task as a quick job.

    ``OPTIONS``: ``url`` (the store; default ``$QUICK_DB``, then quick's default),
    ``max_attempts`` (default 1: a task that raises is FAILED, as Django's backends do;
    more retries it with quick's backoff), ``modules`` (modules beside each app's
    ``tasks`` whose tasks the worker serves).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = params.get("OPTIONS") or {}
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) {sorted(unknown)}; "
                f"QuickBackend takes {sorted(_OPTIONS)}"
            )
        url = options.get("url")
        if url is not None and not isinstance(url, str):
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']['url'] must be a string")
        self.url: str = resolve_url(url)
        try:
            self.max_attempts = check_max_attempts(options.get("max_attempts", 1))
        except InvalidArgument as error:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {error}") from None
        modules = options.get("modules", ())
        if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['modules'] must be a list of module names"
            )
        self.modules: tuple[str, ...] = tuple(modules)

    @property
    def db(self) -> Database:
        """The quick store (opened on first use, shared by every thread)."""
        return _store(self.url)

    def validate_task(self, task: Any) -> None:
        """Django's checks, then quick's on the queue name and topic; registers the task
        (this is how a worker knows the project's tasks)."""
        super().validate_task(task)
        check_name("queue_name", task.queue_name)
        check_name("task", records.topic_of(task.module_path))
        _registered.setdefault(task.module_path, task)

    def _job(self, task: Any, args: Any, kwargs: Any) -> tuple[dict[str, Any], records.Arguments]:
        """quick.enqueue's arguments for ``task(*args, **kwargs)``, checked before writing."""
        self.validate_task(task)
        call = records.encode_arguments(api.normalize_json, args, kwargs, self.alias, now_ms())
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)
        job = {
            "queue_id": task.queue_name,
            "topic": records.topic_of(task.module_path),
            "payload": call.to_payload(),
            "priority": records.quick_priority(task.priority),
            "at": run_after,
            "max_attempts": self.max_attempts,
        }
        return job, call

    def _enqueued(self, task: Any, job_id: str, call: records.Arguments) -> Any:
        result = self._result(task, job_id, api.TaskResultStatus.READY, call)
        api.task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Enqueue ``task`` as a quick job; its TaskResult (READY), whose id is the job id.

        Raises:
            InvalidPayload: an argument is not a JSON value (nothing is written).
            InvalidArgument: a queue name or task path quick cannot take.
        """
        job, call = self._job(task, args, kwargs)
        return self._enqueued(task, quick.enqueue(self.db, **job), call)

    async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """:meth:`enqueue` through ``quick.aio``: the event loop never blocks."""
        import quick.aio

        job, call = self._job(task, args, kwargs)
        return self._enqueued(task, await quick.aio.enqueue(self.db, **job), call)

    def get_result(self, result_id: str) -> Any:
        """The TaskResult of ``result_id`` as the store has it now.

        Raises:
            InvalidArgument: ``result_id`` is not a string of 1-256 bytes.
            TaskResultDoesNotExist: no such job, a job that is not a Django task's, a
                cancelled or discarded job, a purged one, or a corrupt record (named).
        """
        check_name("result_id", result_id)
        with _unreadable_as_missing(result_id):
            found = _read(self.db, result_id)
        return self._from_found(result_id, found)

    async def aget_result(self, result_id: str) -> Any:
        """:meth:`get_result` through ``quick.aio``: the event loop never blocks."""
        import quick.aio

        check_name("result_id", result_id)
        with _unreadable_as_missing(result_id):
            found = await quick.aio.run_joined(self.db, _read, result_id)
        return self._from_found(result_id, found)

    def _from_found(self, result_id: str, found: _Found | None) -> Any:
        status = api.TaskResultStatus
        if found is None:
            raise api.TaskResultDoesNotExist(f"result {result_id}: no such job (or purged)")
        with _unreadable_as_missing(result_id):
            if found.job is not None:
                return self._pending(found.job)
            if found.dead is not None:
                return self._failed(found.dead)
            if found.outcome == JobState.COMPLETED.value:
                output = records.decode_output(found.output)
                task = self._task(result_id, output.module_path)
                result = self._result(
                    task,
                    result_id,
                    status.SUCCESSFUL,
                    output.arguments,
                    started_ms=output.started_ms,
                    finished_ms=output.finished_ms,
                    worker_ids=[*[""] * (output.attempt - 1), output.worker],
                )
                object.__setattr__(result, "_return_value", output.value)
                return result
        raise api.TaskResultDoesNotExist(
            f"result {result_id}: the job was {found.outcome} (quick keeps no result for it)"
        )

    def _pending(self, job: Job) -> Any:
        """READY (waiting, or to be retried) or RUNNING (leased, lease not expired)."""
        task = self._task(job.id, _module_path(job))
        call = records.decode_arguments(job.payload)
        state = job.visible_state(now_ms())
        running = state is JobState.LEASED
        status = api.TaskResultStatus.RUNNING if running else api.TaskResultStatus.READY
        earlier = job.attempt - 1 if running else job.attempt
        workers = [*[""] * max(earlier, 0), *([job.owner or ""] if running else [])]
        errors = [] if job.last_error is None else [records.parse_failure(job.last_error)]
        return self._result(task, job.id, status, call, errors=errors, worker_ids=workers)

    def _failed(self, dead: DeadLetter) -> Any:
        if dead.job is None:
            raise ValueError("its dead letter does not hold the job")
        task = self._task(dead.job_id, _module_path(dead.job))
        call = records.decode_arguments(dead.job.payload)
        failure = records.parse_failure(dead.error)
        attempts = max(dead.job.attempt, 1)
        return self._result(
            task,
            dead.job_id,
            api.TaskResultStatus.FAILED,
            call,
            started_ms=failure.started_ms,
            finished_ms=dead.failed_ms,
            errors=[failure],
            worker_ids=[*[""] * (attempts - 1), failure.worker],
        )

    def _task(self, result_id: str, module_path: str) -> Any:
        """The registered task at ``module_path``; after discovering the project's tasks
        once if it is not registered yet; TaskResultDoesNotExist if still not."""
        task = registered_task(module_path) or discover_tasks(self.modules).get(module_path)
        if task is None:
            raise api.TaskResultDoesNotExist(
                f"result {result_id}: {module_path!r} is not a task registered with a "
                "QuickBackend in this project"
            )
        return task

    def _result(
        self,
        task: Any,
        job_id: str,
        status: Any,
        call: records.Arguments,
        *,
        started_ms: int | None = None,
        finished_ms: int | None = None,
        errors: Iterable[records.Failure] = (),
        worker_ids: Iterable[str] = (),
    ) -> Any:
        return api.TaskResult(
            task=task,
            id=job_id,
            status=status,
            enqueued_at=_time(call.enqueued_ms),
            started_at=_time(started_ms),
            finished_at=_time(finished_ms),
            last_attempted_at=_time(started_ms),
            args=call.args,
            kwargs=call.kwargs,
            backend=call.backend,
            errors=[
                api.TaskError(exception_class_path=e.exception_class_path, traceback=e.traceback)
                for e in errors
            ],
            worker_ids=list(worker_ids),
        )


def _module_path(job: Job) -> str:
    path = records.module_path_of(job.topic)
    if path is None:
        raise ValueError(f"job {job.id} (topic {job.topic!r}) is not a Django task's")
    return path
