"""The Django app ``quick.contrib.django``: adds the ``quick_worker`` management command."""

from __future__ import annotations

from django.apps import AppConfig


class QuickConfig(AppConfig):  # type: ignore[misc]
    """quick's Django app (label ``quick``); it has no models."""

    name = "quick.contrib.django"
    label = "quick"
    verbose_name = "quick"
