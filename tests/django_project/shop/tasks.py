# Without Django's type stubs, mypy sees the task decorator as untyped:
# mypy: disable-error-code="untyped-decorator"
"""The shop's tasks: found by ``manage.py quick_worker`` because they live in ``tasks``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

try:  # Django 6
    from django.tasks import task  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # Django 4.2-5.2, the django-tasks backport
    from django_tasks import task  # type: ignore[no-redef, unused-ignore]

from tests.django_project.shop.models import Order


@task(priority=10)
def fulfil(order_id: int) -> dict[str, int]:
    """Reads the order the view committed before enqueueing."""
    order = Order.objects.get(pk=order_id)
    return {"order": order.pk, "total": order.total}


@task()
def explode(reason: str) -> None:
    raise RuntimeError(reason)


@task(queue_name="slow")
async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task(takes_context=True)
def attempt_of(context: Any, label: str) -> list[Any]:
    return [label, context.attempt, context.task_result.id]


@task()
def shapeless() -> object:
    """Returns what JSON cannot hold: the task fails, naming quick's refusal."""
    return {"when": {1, 2}}


@task()
def hold(path: str) -> str:
    """Runs until ``path`` exists (a minute at most): a task to watch while it runs."""
    for _ in range(600):
        if os.path.exists(path):
            break
        time.sleep(0.1)
    return path
