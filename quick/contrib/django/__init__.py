"""quick for Django's tasks API: ``QuickBackend`` and the ``quick_worker`` command.

Settings (Django 6's ``django.tasks`` or the ``django-tasks`` backport, whichever is
installed)::

    INSTALLED_APPS = [..., "quick.contrib.django"]
    TASKS = {"default": {"BACKEND": "quick.contrib.django.QuickBackend",
                         "OPTIONS": {"url": "sqlite:///./quick.db"}}}

then ``python manage.py quick_worker`` runs the project's tasks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QuickBackend"]


def __getattr__(name: str) -> Any:
    """``QuickBackend``, imported on first use: listing the app in INSTALLED_APPS
    imports this package before Django's tasks API may be asked for."""
    if name == "QuickBackend":
        from quick.contrib.django.backend import QuickBackend

        return QuickBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
