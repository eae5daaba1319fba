"""Placing an order enqueues its fulfilment once the order is committed."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from tests.django_project.shop.models import Order
from tests.django_project.shop.tasks import fulfil


def place_order(request: HttpRequest) -> JsonResponse:
    """POST total=N (and rollback=1 to roll the order back): the order, and the id of
    its fulfilment's result once enqueued."""
    enqueued: list[str] = []
    with transaction.atomic():
        order = Order.objects.create(total=int(request.POST["total"]))
        transaction.on_commit(lambda: enqueued.append(fulfil.enqueue(order.pk).id))
        if request.POST.get("rollback"):
            transaction.set_rollback(True)
    return JsonResponse({"order": order.pk, "result_id": enqueued[0] if enqueued else None})


def result(request: HttpRequest, result_id: str) -> JsonResponse:
    """A task result as JSON: status, attempts, errors, and the return value if any."""
    found = fulfil.get_backend().get_result(result_id)
    body = {
        "status": str(found.status),
        "attempts": found.attempts,
        "errors": [e.exception_class_path for e in found.errors],
    }
    if found.is_finished and not found.errors:
        body["return_value"] = found.return_value
    return JsonResponse(body)
