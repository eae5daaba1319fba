"""The shop's one model."""

from __future__ import annotations

from django.db import models


class Order(models.Model):  # type: ignore[misc]
    total = models.IntegerField()

    class Meta:
        app_label = "shop"
