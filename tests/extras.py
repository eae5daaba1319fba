"""The optional extras some test modules need. Such a module calls its ``require_*``
function before its other imports, so without the extra it is skipped with the reason,
never an import error at collection."""

from __future__ import annotations

import importlib.util

import pytest

#: The import names of the ``dashboard`` extra's packages (pyproject.toml).
DASHBOARD_MODULES = ("flask", "flask_wtf", "waitress")
DASHBOARD_REASON = "needs the dashboard extra: pip install -e '.[dashboard]'"

#: The ``django`` extra: Django, and its tasks API (Django 6's own, else django-tasks).
DJANGO_MODULES = ("django", "django_tasks")
DJANGO_REASON = "needs the django extra: pip install -e '.[django]'"

#: The FastAPI example's test dependencies (in the ``test`` extra).
FASTAPI_MODULES = ("fastapi", "httpx")
FASTAPI_REASON = "needs fastapi and httpx (the test extra): pip install -e '.[test]'"


def require_dashboard() -> None:
    """Skip the calling test module, naming the extra, unless the dashboard extra is installed."""
    for module in DASHBOARD_MODULES:
        pytest.importorskip(module, reason=DASHBOARD_REASON)


def require_django() -> None:
    """Skip the calling test module, naming the extra, unless Django and a tasks API
    (Django 6's ``django.tasks`` or the ``django_tasks`` backport) are installed."""
    pytest.importorskip("django", reason=DJANGO_REASON)
    if importlib.util.find_spec("django.tasks") is None:
        pytest.importorskip("django_tasks", reason=DJANGO_REASON)


def require_fastapi() -> None:
    """Skip the calling test module unless fastapi and httpx are installed."""
    for module in FASTAPI_MODULES:
        pytest.importorskip(module, reason=FASTAPI_REASON)
