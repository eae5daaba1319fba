"""Which Django tasks API is installed: Django 6's ``django.tasks``, else the
``django-tasks`` backport (``django_tasks``, Django 4.2-5.2).

Both spell the same classes in the same submodules, so the backend names them once,
through :data:`api`, and a project moving to Django 6 changes only its ``task`` import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["api", "TasksAPI"]


@dataclass(frozen=True, slots=True)
class TasksAPI:
    """The names the backend uses from the installed tasks API."""

    package: str
    BaseTaskBackend: Any
    Task: Any
    TaskContext: Any
    TaskError: Any
    TaskResult: Any
    TaskResultStatus: Any
    TaskResultDoesNotExist: Any
    task_backends: Any
    task_enqueued: Any
    task_started: Any
    task_finished: Any
    normalize_json: Any


class _NoSignal:
    """Stands in for a signal the installed API does not send."""

    def send(self, sender: Any, **named: Any) -> list[Any]:
        return []


_NO_SIGNAL = _NoSignal()


def _package() -> str:
    try:
        importlib.import_module("django.tasks")
    except ImportError:
        return "django_tasks"
    return "django.tasks"


def _load() -> TasksAPI:
    package = _package()
    base = importlib.import_module(f"{package}.base")
    signals = importlib.import_module(f"{package}.signals")
    json_module = "django.utils.json" if package == "django.tasks" else "django_tasks.utils"
    return TasksAPI(
        package=package,
        BaseTaskBackend=importlib.import_module(f"{package}.backends.base").BaseTaskBackend,
        Task=base.Task,
        TaskContext=base.TaskContext,
        TaskError=base.TaskError,
        TaskResult=base.TaskResult,
        TaskResultStatus=base.TaskResultStatus,
        TaskResultDoesNotExist=importlib.import_module(
            f"{package}.exceptions"
        ).TaskResultDoesNotExist,
        task_backends=importlib.import_module(package).task_backends,
        task_enqueued=getattr(signals, "task_enqueued", _NO_SIGNAL),
        task_started=getattr(signals, "task_started", _NO_SIGNAL),
        task_finished=getattr(signals, "task_finished", _NO_SIGNAL),
        normalize_json=importlib.import_module(json_module).normalize_json,
    )


#: The installed tasks API (ImportError when neither Django 6 nor django-tasks is there).
api = _load()
