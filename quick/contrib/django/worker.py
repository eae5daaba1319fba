"""The quick App that runs a Django project's tasks: ``quick.contrib.django.worker:app``.

``manage.py quick_worker`` serves it (``quick worker --app`` with the project's
settings). Building it sets Django up (``$DJANGO_SETTINGS_MODULE``), imports each
installed app's ``tasks`` module and the backend's ``OPTIONS["modules"]``, and registers
one handler per task registered with a QuickBackend, under the topic
``django:<module path>``. A job naming any other task finds no handler and is
dead-lettered: nothing named by a stored value is ever imported.

A handler runs the task in a consumer thread (an ``async def`` task on its own event
loop, through asgiref's ``async_to_sync``), with Django's database connections closed
around it as a request's are, and sends Django's ``task_started`` and ``task_finished``
signals. Its return value (a JSON value) is stored with the finished job; what it raises
fails the attempt with the exception's class path and traceback (:class:`TaskFailed`).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

from quick.app import App, Meta
from quick.errors import Discard, Snooze

__all__ = ["BACKEND_ENV", "project_app", "handler_for"]

#: The TASKS alias whose backend the worker serves (set by ``quick_worker --backend``).
BACKEND_ENV = "QUICK_DJANGO_BACKEND"


def _setup() -> None:
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def handler_for(module_path: str) -> Callable[[Any, Meta], Any]:
    """The handler that runs the registered task at ``module_path`` for one job."""

    def run(payload: Any, meta: Meta) -> Any:
        from django.db import close_old_connections

        from quick.contrib.django import records
        from quick.contrib.django.backend import QuickBackend, registered_task
        from quick.contrib.django.compat import api
        from quick.jobs import now_ms

        task = registered_task(module_path)
        assert task is not None, "handlers are made for registered tasks only"
        call = records.decode_arguments(payload)
        started = now_ms()
        status = api.TaskResultStatus
        backend = QuickBackend  # the signals' sender, as Django's backends send their class
        result = api.TaskResult(
            task=task,
            id=meta.job_id,
            status=status.RUNNING,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=call.args,
            kwargs=call.kwargs,
            backend=call.backend,
            errors=[],
            worker_ids=[*[""] * (meta.attempt - 1), meta.owner],
        )
        api.task_started.send(sender=backend, task_result=result)
        close_old_connections()
        try:
            if task.takes_context:
                value = task.call(api.TaskContext(task_result=result), *call.args, **call.kwargs)
            else:
                value = task.call(*call.args, **call.kwargs)
            value = records.json_value(api.normalize_json, "return value", value)
        except (Snooze, Discard):
            raise
        except Exception as error:
            object.__setattr__(result, "status", status.FAILED)
            api.task_finished.send(sender=backend, task_result=result)
            kind = type(error)
            raise records.TaskFailed(
                f"{kind.__module__}.{kind.__qualname__}",
                "".join(traceback.format_exception(error)),
                meta.owner,
                started,
            ) from error
        finally:
            close_old_connections()
        object.__setattr__(result, "status", status.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
        api.task_finished.send(sender=backend, task_result=result)
        return records.encode_output(
            value, meta.owner, meta.attempt, started, now_ms(), module_path, call
        )

    return run


def project_app(alias: str | None = None) -> App:
    """The App serving the project's tasks: Django set up, its tasks discovered.

    Args:
        alias: the TASKS alias of a QuickBackend (default ``$QUICK_DJANGO_BACKEND``,
            then ``default``); its ``OPTIONS["modules"]`` are imported too.

    Raises:
        ImproperlyConfigured: the alias is not in TASKS, or not a QuickBackend.
    """
    _setup()
    from django.core.exceptions import ImproperlyConfigured

    from quick.contrib.django import records
    from quick.contrib.django.backend import QuickBackend, discover_tasks
    from quick.contrib.django.compat import api

    alias = alias or os.environ.get(BACKEND_ENV) or "default"
    try:
        backend = api.task_backends[alias]
    except Exception as error:
        raise ImproperlyConfigured(f"TASKS has no backend {alias!r}: {error}") from None
    if not isinstance(backend, QuickBackend):
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}] is a {type(backend).__name__}, not quick's QuickBackend"
        )
    app = App()
    for module_path in sorted(discover_tasks(backend.modules)):
        app.job(records.topic_of(module_path), max_attempts=backend.max_attempts)(
            handler_for(module_path)
        )
    return app


def __getattr__(name: str) -> App:
    """``app``: built on first use (``quick worker --app quick.contrib.django.worker:app``)."""
    if name == "app":
        return project_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
